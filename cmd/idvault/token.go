package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/idvault/idvault/vault"
)

var tokenRotateCommand = &command{
	path:    "token rotate",
	summary: "rotate the key that seals access tokens",
	usage:   "token rotate --as PRINCIPAL [--reason TEXT] [--revoke] [--store URL] [--key-store URL] --kek URI [--passphrase SOURCE]",
	help: `Adds a fresh token-sealing key to the vault's keyset and makes it the one new
tokens are sealed with (Admin.RotateTokenKey). Tokens already issued keep
opening until they expire (60 s by default), so nothing in flight breaks;
running vaults pick the new key up on their own. The rotation is recorded in
the audit log with the acting principal and reason. Run it from one place at a
time: two concurrent rotations keep only one of the new keys.

The vault is opened on the data store and the key store (--key-store) with
the KEK named by --kek (local:PATH, aws-kms://…, pkcs11:…); a local
keyset's passphrase comes from --passphrase or $IDVAULT_PASSPHRASE; all
usually from the deployment file init wrote. --revoke retires every older token key at once, so
tokens sealed under a leaked key stop opening.

Example:
  IDVAULT_PASSPHRASE=... idvault token rotate --as ops-1 --reason "quarterly" --store /var/lib/idvault/store --kek local:/etc/idvault/kek
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		keyStoreURL := keyStoreFlag(fs)
		kf := addKEKFlags(fs)
		actor := fs.String("as", "", "the acting `PRINCIPAL` recorded in the audit log (default $IDVAULT_ACTOR); required")
		reason := fs.String("reason", "", "why, recorded in the audit log (a ticket, a schedule): `TEXT`")
		revoke := fs.Bool("revoke", false, "retire every older token key at once: outstanding tokens stop opening (a leaked key)")
		return func(ctx context.Context, c *cli) int {
			principal, code := c.actingPrincipal(*actor)
			if code != exitOK {
				return code
			}
			by := vault.Actor{Principal: principal, Reason: *reason}
			if _, err := c.storeSpecFrom(*storeURL); err != nil {
				return c.usageError(err.Error())
			}
			kek, usage, err := c.openKEK(ctx, kf)
			if err != nil {
				if usage {
					return c.usageError(err.Error())
				}
				return c.fail(err)
			}
			v, code := c.openVault(ctx, *storeURL, *keyStoreURL, checkKeyStoreNamed, kek)
			if code != exitOK {
				return code
			}
			err = v.Admin().RotateTokenKey(ctx, by, vault.RotateOptions{Revoke: *revoke})
			if cerr := v.Close(ctx); err == nil {
				err = cerr
			}
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintf(c.stdout, "token key rotated for vault %s; tokens issued before keep working until they expire\n", v.ID())
			return exitOK
		}
	},
}
