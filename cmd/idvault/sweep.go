package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/idvault/idvault/vault"
)

var sweepCommand = &command{
	path:    "sweep",
	summary: "delete expired documents now (shred first), collect garbage, report",
	usage:   "sweep --as PRINCIPAL [--store URL] [--key-store URL] --kek URI [--passphrase SOURCE]",
	help: `Runs one sweep: every document past its expiry
(72 h after upload by default) is shredded — its key record deleted first, so
no copy of the ciphertext is of any use — then its payload and index entries
go, with a deletion receipt per document in the audit log. Documents under
legal hold are kept and counted. Payloads left by failed uploads and spent
single-use tokens are collected too. Safe to run while vaults serve, and
from several machines at once.

The vault is opened on the data store and the key store (--key-store: the
unversioned key bucket of init's layout) with its KEK (--kek URI, e.g.
local:/etc/idvault/kek; --kek-file PATH still works and means --kek
local:PATH); a local keyset's passphrase comes from --passphrase
(file:PATH, env:NAME, prompt), --passphrase-file or $IDVAULT_PASSPHRASE.
All of them usually come from the deployment file init wrote. Without a
key store it refuses a data store that cannot hold the key records (see
"idvault help kek"): sweeping there would take every payload for an
orphan. On a terminal a progress bar is drawn on stderr; otherwise one
summary line is printed.

The acting principal (--as, default $IDVAULT_ACTOR) is required: it is
recorded in the sweep's audit records and every deletion receipt.

Example:
  idvault sweep --as cron:sweep --store /var/lib/idvault/store --kek local:/etc/idvault/kek --passphrase file:/etc/idvault/pass
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		keyStoreURL := keyStoreFlag(fs)
		kf := addKEKFlags(fs)
		actor := fs.String("as", "", "the acting `PRINCIPAL` recorded in the audit log (default $IDVAULT_ACTOR); required")
		return func(ctx context.Context, c *cli) int {
			return c.sweep(ctx, *storeURL, *keyStoreURL, kf, *actor)
		}
	},
}

func (c *cli) sweep(ctx context.Context, storeURL, keyStoreURL string, kf *kekFlags, actor string) int {
	if _, err := c.storeSpecFrom(storeURL); err != nil {
		return c.usageError(err.Error())
	}
	actor, code := c.actingPrincipal(actor)
	if code != exitOK {
		return code
	}
	kek, usage, err := c.openKEK(ctx, kf)
	if usage {
		return c.usageError(err.Error())
	}
	if err != nil {
		return c.fail(err)
	}
	v, code := c.openVault(ctx, storeURL, keyStoreURL, checkKeysVisible, kek)
	if code != exitOK {
		return code
	}
	start := time.Now()
	var progress func(vault.SweepProgress)
	if isTerminal(c.stderr) {
		progress = func(p vault.SweepProgress) {
			drawBar(c.stderr, p.Done, p.Total, fmt.Sprintf("expired %d  held %d", p.Report.Expired, p.Report.Held))
		}
	}
	rep, err := v.Admin().SweepWithProgress(ctx, vault.Actor{Principal: actor, Reason: "idvault sweep"}, progress)
	if progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if cerr := v.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "swept in %s: %d expired and shredded, %d held, %d orphan payloads, %d dangling index entries, %d spent tokens collected, %d busy with another sweeper\n",
		time.Since(start).Round(time.Millisecond), rep.Expired, rep.Held, rep.Orphans, rep.Dangling, rep.Ledger, rep.Busy)
	return exitOK
}

// drawBar redraws a one-line progress bar of done out of total, followed
// by detail (the counts so far).
func drawBar(w io.Writer, done, total int, detail string) {
	const width = 30
	filled := 0
	if total > 0 {
		filled = width * done / total
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d  %s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total, detail)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
