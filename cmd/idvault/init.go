package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

var initCommand = &command{
	path:             "init",
	summary:          "create or check the stores, open the vault, write the deployment file",
	usage:            "init [--store] URL --key-store URL --kek URI [--create-kek] [--passphrase SOURCE] [--max-retention DURATION] [--config FILE]",
	args:             1,
	positionalStore:  true,
	writesDeployment: true,
	help: `Prepares a deployment, or checks one, writes the deployment file every
other command reads, and is safe to run again. On S3, the recommended layout:

  1. the data bucket (the store URL's bucket) with object lock, so audit
     batches and checkpoints are write-once: created when absent; an existing
     bucket without object lock is refused (S3 enables it only at creation);
  2. the key bucket (--key-store s3://BUCKET?...) for key records,
     unversioned, so deleting a key record shreds its document: created when
     absent; a versioned or object-locked one is refused;
  3. the lifecycle backstop on the data bucket: payloads (blobs/) tagged
     idvault-expire=yes expire a day after the longest retention
     (ceil(--max-retention / 24h) + 1 days). The vault tags every payload it
     writes, and tags a document under legal hold idvault-expire=no, so the
     backstop never deletes held evidence. Payloads written before this tag
     existed (idvault before the legal-hold fix) carry no tag: the backstop
     no longer applies to them, and Sweep deletes them as before. Running
     init again replaces an older untagged rule;
  4. opens the vault with RequireWriteOnceAudit (creating its keyset on first
     use) and prints the audit verifier key.

A directory store (a path or file:///path) is created when absent (mode
0700), with its key records in --key-store when given; it has no write-once
audit log and no lifecycle rule.

The KEK is named by --kek URI (local:PATH, aws-kms://..., pkcs11:...);
with --create-kek a local: keyset that does not exist yet is created
(passphrase from --passphrase: file:PATH, env:NAME or prompt; default
env:IDVAULT_PASSPHRASE). "idvault kek create" makes one on its own.

The deployment file (--config FILE, else $IDVAULT_CONFIG, else
~/.config/idvault/idvault.conf) gets the store, the key store, the KEK,
where its passphrase comes from, the pinned verifier key and, when given,
--as, --state, --witness and --s3-credentials. It never holds a secret.
An existing file is updated in place when it describes the same store;
one describing another store, or pinning another verifier key, is an
error (exit 2, or 1 for the verifier key: the vault's keyset is not the
one the file pinned). With --witness, the first signed heads are written.

Deprecated, for one more release: --key-bucket BUCKET (the key store on
the data store's endpoint), --kek-file FILE (--kek local:FILE) and
--passphrase-file FILE (--passphrase file:FILE).

The last line of the output is the verifier key alone.

Example:
  IDVAULT_PASSPHRASE=... idvault init 's3://idv-data?endpoint=s3.eu-west-1.amazonaws.com&region=eu-west-1' \
      --key-store 's3://idv-keys?endpoint=s3.eu-west-1.amazonaws.com&region=eu-west-1' \
      --kek local:/etc/idvault/kek --create-kek --passphrase env:IDVAULT_PASSPHRASE --config /etc/idvault/idvault.conf
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		a := &initArgs{}
		a.store = storeFlag(fs)
		a.keyStore = keyStoreFlag(fs)
		a.keyBucket = fs.String("key-bucket", "", "deprecated: the unversioned key `BUCKET` on the data store's endpoint; use --key-store")
		a.kek = addKEKFlags(fs)
		a.create = fs.Bool("create-kek", false, "create the local: keyset when it does not exist")
		a.maxRet = fs.Duration("max-retention", vault.DefaultRetention, "the vault's longest retention (Config.Retention.Max), which sets the backstop: `DURATION`")
		a.actor = fs.String("as", "", "the acting `PRINCIPAL` to record in the deployment file (optional)")
		a.state = fs.String("state", "", "audit verify's state `FILE`, to record in the deployment file (optional)")
		a.witness = fs.String("witness", "", "the signed heads `FILE`, kept outside the store's writers' reach: written now and recorded in the deployment file (optional)")
		return func(ctx context.Context, c *cli) int {
			return c.init(ctx, a, fs)
		}
	},
}

// initArgs are init's flags.
type initArgs struct {
	store, keyStore, keyBucket *string
	kek                        *kekFlags
	create                     *bool
	maxRet                     *time.Duration
	actor, state, witness      *string
}

func (c *cli) init(ctx context.Context, a *initArgs, fs *flag.FlagSet) int {
	raw := *a.store
	if len(c.args) == 1 {
		if c.origins["store"].kind == "flag" && raw != "" {
			return c.usageError("give the store once: as the argument or as --store")
		}
		raw = c.args[0]
	}
	spec, err := c.storeSpecFrom(raw)
	if err != nil {
		return c.usageError(err.Error())
	}
	if *a.maxRet <= 0 {
		return c.usageError("--max-retention must be positive")
	}
	// The key store: --key-store, or the deprecated --key-bucket.
	keyRaw := *a.keyStore
	if *a.keyBucket != "" {
		if c.origins["key-store"].kind == "flag" && keyRaw != "" {
			return c.usageError("give the key store once: --key-store (or the deprecated --key-bucket)")
		}
		if spec.Kind != kindS3 {
			return c.usageError("--key-bucket names a bucket: the data store must be s3://")
		}
		ks := spec
		ks.Bucket = *a.keyBucket
		if !validBucket(ks.Bucket) {
			return c.usageError("--key-bucket: bucket must be 3-63 characters of [a-z0-9.-]")
		}
		keyRaw = ks.String()
		fmt.Fprintln(c.stderr, "note: --key-bucket is deprecated; use --key-store "+keyRaw)
	}
	kspec, named, err := c.keyStoreSpec(keyRaw)
	if err != nil {
		return c.usageError(err.Error())
	}
	if named && kspec.String() == spec.String() {
		named = false
	}
	switch {
	case spec.Kind == kindS3 && !named:
		return c.usageError("no key store: pass --key-store s3://BUCKET?... (an unversioned bucket for key records)")
	case spec.Kind == kindS3 && kspec.Kind != kindS3:
		return c.usageError("the key store of an S3 deployment must be an s3:// bucket")
	case spec.Kind == kindS3 && kspec.Endpoint == spec.Endpoint && kspec.Bucket == spec.Bucket:
		return c.usageError("the key bucket must differ from the data bucket: an object-locked bucket keeps every version of a deleted key record")
	case spec.Kind == kindFile && named && kspec.Kind != kindFile:
		return c.usageError("the key store of a directory deployment must be a directory")
	}
	// The deployment file: an existing one must describe this store.
	cfgPath, _ := c.deploymentPath(flagString(fs, "config"))
	if d := c.deploy; d != nil && d.values["store"] != "" && !sameStore(d.values["store"], spec.String()) {
		return c.fail(fmt.Errorf("the deployment file %s describes another store; pass --config with a new file, or remove it", d.path))
	}

	// Nor may it move the key records: the vault would be opened on a key
	// store without them, and the next sweep would take every payload for
	// an orphan.
	if d := c.deploy; d != nil && d.values["store"] != "" {
		was, now := "", ""
		if d.values["key-store"] != "" {
			if ks, err := parseStoreURL(d.values["key-store"]); err == nil && ks.String() != spec.String() {
				was = ks.String()
			}
		}
		if named {
			now = kspec.String()
		}
		if was != now {
			return c.fail(fmt.Errorf("the deployment file %s keeps this vault's key records in another key store; init does not move them (copy the key records, then edit key-store by hand)", d.path))
		}
	}

	uri := c.kekURI(a.kek)
	if uri == "" {
		return c.usageError("no KEK: pass --kek URI (local:PATH, aws-kms://..., pkcs11:...)")
	}
	src, err := c.passphraseSource(a.kek)
	if err != nil {
		return c.usageError(err.Error())
	}
	if *a.create {
		path, ok := strings.CutPrefix(uri, "local:")
		if !ok {
			return c.usageError("--create-kek creates local: keysets; create a KMS or HSM key with its own tools")
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if code := c.createKeyset(ctx, path, src); code != exitOK {
				return code
			}
		}
	}
	kek, err := c.openKEKURI(ctx, uri, src)
	if errors.Is(err, kms.ErrNoPassphrase) {
		return c.usageError(fmt.Sprintf("no passphrase: pass --passphrase (file:PATH, env:NAME, prompt) or set IDVAULT_PASSPHRASE: %v", err))
	}
	if err != nil {
		return c.fail(err)
	}

	var data, keys store.Store
	var write bool
	if spec.Kind == kindS3 {
		data, keys, err = c.prepareS3(ctx, spec, kspec, *a.maxRet)
		write = true
	} else {
		data, keys, err = c.prepareDir(spec, kspec, named)
	}
	if err != nil {
		return c.fail(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: data, KEK: kek, Storage: vault.StorageConfig{KeyStore: keys}, Audit: vault.AuditConfig{RequireWriteOnce: write}})
	if err != nil {
		return c.fail(err)
	}
	id, vk := v.ID(), v.AuditVerifierKey()
	if err := v.Close(ctx); err != nil {
		return c.fail(err)
	}
	if write {
		fmt.Fprintf(c.stdout, "vault %s: ready, audit log write-once\n", id)
	} else {
		fmt.Fprintf(c.stdout, "vault %s: ready (a directory: the audit log is tamper-evident, not write-once)\n", id)
	}
	if d := c.deploy; d != nil && d.values["verifier-key"] != "" && d.values["verifier-key"] != vk {
		fmt.Fprintf(c.stderr, "idvault init: the vault's audit verifier key is not the one %s pins: the vault's keyset was replaced, or the file describes another vault; the file is left as it was\n", d.path)
		return exitFailed
	}
	if *a.witness != "" {
		heads, err := audit.Heads(ctx, data, vk)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(*a.witness), 0o700)
		}
		if err == nil {
			err = writeFileAtomic(*a.witness, audit.FormatHeads(heads), 0o600)
		}
		if err != nil {
			return c.fail(fmt.Errorf("writing the witness file: %w", err))
		}
		fmt.Fprintf(c.stdout, "witness %s: %d signed heads written\n", *a.witness, len(heads))
	}

	values := map[string]string{"store": spec.String(), "kek": absKEKURI(uri), "verifier-key": vk}
	if named {
		values["key-store"] = kspec.String()
	}
	if spec.Creds.file != "" {
		values["s3-credentials"] = spec.Creds.String()
	}
	if strings.HasPrefix(uri, "local:") {
		values["passphrase"] = absPassphraseSource(passphraseSpec(a.kek))
	}
	for k, p := range map[string]*string{"actor": a.actor, "state": a.state, "witness": a.witness} {
		if *p != "" {
			values[k] = *p
			if k != "actor" {
				values[k], _ = filepath.Abs(*p)
			}
		}
	}
	if cfgPath == "" {
		fmt.Fprintln(c.stdout, "deployment file: none written (no --config, $IDVAULT_CONFIG or $HOME)")
	} else if err := writeDeployment(cfgPath, c.deploy, values); err != nil {
		return c.fail(fmt.Errorf("writing the deployment file: %w", err))
	} else {
		fmt.Fprintf(c.stdout, "deployment file %s: written; every idvault command reads it (--config, $IDVAULT_CONFIG)\n", cfgPath)
	}
	fmt.Fprintf(c.stdout, "audit verifier key (pinned in the deployment file; keep a copy outside the store too):\n%s\n", vk)
	return exitOK
}

// writeDeployment writes values to path: a new file, or the existing one
// d updated in place.
func writeDeployment(path string, d *deployment, values map[string]string) error {
	var b []byte
	if d != nil && d.path == path {
		changes := map[string]string{}
		for k, v := range values {
			if d.values[k] != v {
				changes[k] = v
			}
		}
		if len(changes) == 0 {
			return nil
		}
		b = updateDeployment(d.raw, changes)
	} else {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s exists but was not read", path)
		}
		b = formatDeployment(values)
	}
	// The result must read back: never leave a file no command can use.
	if _, err := parseDeployment(b); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o644)
}

// prepareS3 creates or checks the two buckets and installs the backstop.
func (c *cli) prepareS3(ctx context.Context, spec, kspec storeSpec, maxRet time.Duration) (data, keys store.Store, err error) {
	client, err := s3Client(spec, c.env)
	if err != nil {
		return nil, nil, err
	}
	kclient, err := s3Client(kspec, c.env)
	if err != nil {
		return nil, nil, err
	}
	if err := ensureBucket(ctx, c, client, spec.Bucket, spec.Region, true); err != nil {
		return nil, nil, err
	}
	if err := ensureBucket(ctx, c, kclient, kspec.Bucket, kspec.Region, false); err != nil {
		return nil, nil, err
	}
	ds, err := s3store.New(ctx, client, spec.Bucket, s3store.Options{Prefix: spec.Prefix})
	if err != nil {
		return nil, nil, err
	}
	ks, err := s3store.New(ctx, kclient, kspec.Bucket, s3store.Options{Prefix: kspec.Prefix})
	if err != nil {
		return nil, nil, err
	}
	days := int((maxRet+24*time.Hour-1)/(24*time.Hour)) + 1
	if err := ds.SetExpiryRule(ctx, "blobs/", days); err != nil {
		return nil, nil, fmt.Errorf("installing the lifecycle backstop: %w", err)
	}
	fmt.Fprintf(c.stdout, "lifecycle backstop: payloads (blobs/) tagged %s=yes expire %d days after upload; held payloads are tagged no and kept\n", s3store.ExpiryTag, days)
	return ds, ks, nil
}

// prepareDir creates the store directories when absent.
func (c *cli) prepareDir(spec, kspec storeSpec, named bool) (data, keys store.Store, err error) {
	dirs := []string{spec.Path}
	if named {
		dirs = append(dirs, kspec.Path)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, nil, err
			}
			fmt.Fprintf(c.stdout, "directory %s: created\n", d)
		} else {
			fmt.Fprintf(c.stdout, "directory %s: exists\n", d)
		}
	}
	ds, err := fsstore.Open(spec.Path)
	if err != nil {
		return nil, nil, err
	}
	if !named {
		return ds, nil, nil
	}
	ks, err := fsstore.Open(kspec.Path)
	if err != nil {
		return nil, nil, err
	}
	return ds, ks, nil
}

// ensureBucket creates bucket (with object lock if locked) or checks that
// the existing one is what the deployment needs.
func ensureBucket(ctx context.Context, c *cli, client *minio.Client, bucket, region string, locked bool) error {
	role := "key bucket"
	if locked {
		role = "data bucket"
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if !ok {
		if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: region, ObjectLocking: locked}); err != nil {
			return fmt.Errorf("creating %s %s: %w", role, bucket, err)
		}
		if locked {
			fmt.Fprintf(c.stdout, "%s %s: created with object lock\n", role, bucket)
		} else {
			fmt.Fprintf(c.stdout, "%s %s: created, unversioned\n", role, bucket)
		}
		return nil
	}
	lockOn, err := objectLockOn(ctx, client, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if locked {
		if !lockOn {
			return fmt.Errorf("%s %s exists without object lock, which S3 enables only when a bucket is created; choose a new bucket name: %w", role, bucket, errBucketUnfit)
		}
		fmt.Fprintf(c.stdout, "%s %s: exists, object lock on\n", role, bucket)
		return nil
	}
	vc, err := client.GetBucketVersioning(ctx, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if lockOn || vc.Status == "Enabled" || vc.Status == "Suspended" {
		return fmt.Errorf("%s %s keeps object versions, so deleting a key record would not shred it; use a new unversioned bucket: %w", role, bucket, errBucketUnfit)
	}
	fmt.Fprintf(c.stdout, "%s %s: exists, unversioned\n", role, bucket)
	return nil
}

// errBucketUnfit: an existing bucket cannot serve the role init checks.
var errBucketUnfit = errors.New("bucket unfit for its role")

func objectLockOn(ctx context.Context, client *minio.Client, bucket string) (bool, error) {
	status, _, _, _, err := client.GetObjectLockConfig(ctx, bucket)
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "ObjectLockConfigurationNotFoundError", "NotImplemented":
			return false, nil
		}
		return false, err
	}
	return status == "Enabled", nil
}

// flagString is the value of fs's flag name ("" when it has none).
func flagString(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// absKEKURI makes a local: URI's path absolute, for the deployment file.
func absKEKURI(uri string) string {
	if p, ok := strings.CutPrefix(uri, "local:"); ok {
		if abs, err := filepath.Abs(p); err == nil {
			return "local:" + abs
		}
	}
	return uri
}

// absPassphraseSource makes a file: source's path absolute.
func absPassphraseSource(spec string) string {
	if p, ok := strings.CutPrefix(spec, "file:"); ok {
		if abs, err := filepath.Abs(p); err == nil {
			return "file:" + abs
		}
	}
	return spec
}
