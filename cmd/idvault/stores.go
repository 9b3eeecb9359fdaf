package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

// errKeysUnseen: the command would count or rewrite key records in a store
// that cannot hold them, or holds none while payloads exist: it names the
// key store it needs instead of answering from the wrong one.
var errKeysUnseen = errors.New("the key records are not in this store")

// deploymentStores are the data store and, when named, the key store.
type deploymentStores struct {
	data, keys        store.Store // keys is nil when the data store holds the key records
	dataSpec, keySpec storeSpec
	keysNamed         bool // a key store was named, possibly the data store itself
}

// keysAt names where the key records are, for messages.
func (d deploymentStores) keysAt() string {
	if d.keys != nil {
		return d.keySpec.String()
	}
	return d.dataSpec.String() + " (the data store)"
}

// openStores opens the data store and the key store the flags (or the
// deployment) name. On failure it has reported the problem and returns
// the exit code.
func (c *cli) openStores(ctx context.Context, storeURL, keyStoreURL string) (deploymentStores, int) {
	var d deploymentStores
	var err error
	if d.dataSpec, err = c.storeSpecFrom(storeURL); err != nil {
		return d, c.usageError(err.Error())
	}
	ks, named, err := c.keyStoreSpec(keyStoreURL)
	if err != nil {
		return d, c.usageError(err.Error())
	}
	d.keysNamed = named
	if named && ks.String() == d.dataSpec.String() {
		named = false // the data store holds its own key records
	}
	if d.data, err = openStore(ctx, d.dataSpec, c.env); err != nil {
		return d, c.fail(err)
	}
	if named {
		d.keySpec = ks
		if d.keys, err = openStore(ctx, ks, c.env); err != nil {
			return d, c.fail(fmt.Errorf("key store: %w", err))
		}
	}
	return d, exitOK
}

// versioner is implemented by stores that know whether they keep old
// versions of deleted objects (s3store), as the vault checks.
type versioner interface {
	Versioned(ctx context.Context) (bool, error)
}

// checkKeysVisible returns an error wrapping errKeysUnseen when no key
// store is named and the data store cannot be where the key records are: it
// keeps object versions (an object-locked bucket, where the vault refuses
// to keep key records), or it holds payloads but not a single key record.
// With a key store named it trusts it.
func checkKeysVisible(ctx context.Context, d deploymentStores) error {
	if d.keysNamed {
		return nil
	}
	if err := checkKeyStoreNamed(ctx, d); err != nil {
		return err
	}
	keys, err := hasAny(ctx, d.data, "keys/")
	if err != nil || keys {
		return err
	}
	blobs, err := hasAny(ctx, d.data, "blobs/")
	if err != nil || !blobs {
		return err
	}
	return fmt.Errorf("%w: the data store %s holds payloads but no key record; if the key records are kept elsewhere, "+
		"name that store with --key-store, $IDVAULT_KEY_STORE or key-store in the deployment file; if they were kept here, "+
		"every document is shredded: pass --key-store with the data store's own URL to go on", errKeysUnseen, d.dataSpec)
}

// checkKeyStoreNamed returns an error wrapping errKeysUnseen when no key
// store is named and the data store keeps object versions: the vault
// keeps no key records there (Open refuses it), so they are elsewhere.
func checkKeyStoreNamed(ctx context.Context, d deploymentStores) error {
	if d.keysNamed {
		return nil
	}
	if vs, ok := d.data.(versioner); ok {
		on, err := vs.Versioned(ctx)
		if err != nil {
			return fmt.Errorf("checking whether the data store keeps versions: %w", err)
		}
		if on {
			return fmt.Errorf("%w: the data store %s keeps object versions (object lock), where the vault keeps no key records; "+
				"name the key store with --key-store, $IDVAULT_KEY_STORE or key-store in the deployment file (idvault init writes it)", errKeysUnseen, d.dataSpec)
		}
	}
	return nil
}

// hasAny reports whether st holds any key under prefix.
func hasAny(ctx context.Context, st store.Store, prefix string) (bool, error) {
	for _, err := range st.List(ctx, prefix) {
		if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// actingPrincipal returns principal, or $IDVAULT_ACTOR when it is empty;
// code is exitUsage when both are empty (an administrative command is
// recorded in the audit log under its acting principal).
func (c *cli) actingPrincipal(principal string) (string, int) {
	if principal == "" {
		principal = c.env("IDVAULT_ACTOR")
	}
	if principal == "" {
		return "", c.usageError("no acting principal: pass --as or set IDVAULT_ACTOR (it is recorded in the audit log)")
	}
	return principal, exitOK
}

// openVault opens the data and key stores of storeURL and keyStoreURL
// (openStores), runs check on them (checkKeysVisible or
// checkKeyStoreNamed), and opens the vault on them with kek, also
// decrypting with decrypt. code is non-zero when the command must stop.
func (c *cli) openVault(ctx context.Context, storeURL, keyStoreURL string, check func(context.Context, deploymentStores) error, kek kms.KEK, decrypt ...kms.KEK) (*vault.Vault, int) {
	d, code := c.openStores(ctx, storeURL, keyStoreURL)
	if code != exitOK {
		return nil, code
	}
	if err := check(ctx, d); err != nil {
		return nil, c.fail(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: d.data, KEK: kek, Storage: vault.StorageConfig{KeyStore: d.keys, DecryptKEKs: decrypt}})
	if err != nil {
		return nil, c.fail(err)
	}
	return v, exitOK
}
