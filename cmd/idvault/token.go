package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

var tokenRotateCommand = &command{
	path:    "token rotate",
	summary: "rotate the key that seals access tokens",
	usage:   "token rotate --as PRINCIPAL [--reason TEXT] [--revoke] [--store URL] --kek URI [--passphrase SOURCE]",
	help: `Adds a fresh token-sealing key to the vault's keyset and makes it the one new
tokens are sealed with (Vault.RotateTokenKey). Tokens already issued keep
opening until they expire (60 s by default), so nothing in flight breaks;
running vaults pick the new key up on their own. The rotation is recorded in
the audit log with the acting principal and reason. Run it from one place at a
time: two concurrent rotations keep only one of the new keys.

The vault is opened with the KEK named by --kek (local:PATH, aws-kms://…,
pkcs11:…); a local keyset's passphrase comes from --passphrase or
$IDVAULT_PASSPHRASE. --revoke retires every older token key at once, so
tokens sealed under a leaked key stop opening.

Example:
  IDVAULT_PASSPHRASE=... idvault token rotate --as ops-1 --reason "quarterly" --store /var/lib/idvault/store --kek local:/etc/idvault/kek
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		kf := addKEKFlags(fs)
		actor := fs.String("as", "", "the acting `PRINCIPAL` recorded in the audit log (default $IDVAULT_ACTOR); required")
		reason := fs.String("reason", "", "why, recorded in the audit log (a ticket, a schedule): `TEXT`")
		revoke := fs.Bool("revoke", false, "retire every older token key at once: outstanding tokens stop opening (a leaked key)")
		return func(ctx context.Context, c *cli) int {
			by := vault.Actor{Principal: *actor, Reason: *reason}
			if by.Principal == "" {
				by.Principal = c.env("IDVAULT_ACTOR")
			}
			if by.Principal == "" {
				return c.usageError("no acting principal: pass --as or set IDVAULT_ACTOR (it is recorded in the audit log)")
			}
			spec, err := c.storeSpecFrom(*storeURL)
			if err != nil {
				return c.usageError(err.Error())
			}
			kek, usage, err := c.openKEK(ctx, kf)
			if err != nil {
				if usage {
					return c.usageError(err.Error())
				}
				return c.fail(err)
			}
			st, err := openStore(ctx, spec, c.env)
			if err != nil {
				return c.fail(err)
			}
			v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
			if err != nil {
				return c.fail(err)
			}
			err = v.RotateTokenKey(ctx, by, vault.RotateOptions{Revoke: *revoke})
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

// localKEKFlags registers --kek-file and --passphrase-file (init, which
// may create the local keyset).
func localKEKFlags(fs *flag.FlagSet) (kekFile, passFile *string) {
	kekFile = fs.String("kek-file", "", "the local keyset `FILE` (default $IDVAULT_KEK_FILE)")
	passFile = fs.String("passphrase-file", "", "read the keyset passphrase from `FILE` (default $IDVAULT_PASSPHRASE)")
	return kekFile, passFile
}

// openKEK opens (or, with create, creates when absent) the local keyset
// the way sweep does. On failure it has reported the problem and returns
// nil and the exit code.
func (c *cli) openLocalKEK(kekFile, passFile string, create bool) (kms.KEK, int) {
	if kekFile == "" {
		kekFile = c.env("IDVAULT_KEK_FILE")
	}
	if kekFile == "" {
		return nil, c.usageError("no keyset: pass --kek-file or set IDVAULT_KEK_FILE")
	}
	var pass []byte
	if passFile != "" {
		b, err := os.ReadFile(passFile)
		if err != nil {
			return nil, c.fail(fmt.Errorf("reading the passphrase file: %w", err))
		}
		pass = []byte(strings.TrimRight(string(b), "\r\n"))
	} else {
		pass = []byte(c.env("IDVAULT_PASSPHRASE"))
	}
	defer clear(pass)
	if len(pass) == 0 {
		return nil, c.usageError("no passphrase: pass --passphrase-file or set IDVAULT_PASSPHRASE")
	}
	if create {
		if _, err := os.Stat(kekFile); os.IsNotExist(err) {
			kek, err := kms.CreateLocal(kekFile, pass, kms.LocalOptions{})
			if err != nil {
				return nil, c.fail(err)
			}
			fmt.Fprintf(c.stdout, "keyset %s: created; back it up and keep the passphrase in a secret manager\n", kekFile)
			return kek, exitOK
		}
	}
	kek, err := kms.OpenLocal(kekFile, pass)
	if err != nil {
		return nil, c.fail(err)
	}
	return kek, exitOK
}
