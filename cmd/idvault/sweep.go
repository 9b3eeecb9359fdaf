package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

var sweepCommand = &command{
	path:    "sweep",
	summary: "delete expired documents now (shred first), collect garbage, report",
	usage:   "sweep --as PRINCIPAL [--store URL] --kek-file FILE [--passphrase-file FILE]",
	help: `Runs the vault's sweeper once: every document past its retention deadline
(72 h after upload by default) is shredded — its key record deleted first, so
no copy of the ciphertext is of any use — then its payload and index entries
go, with a deletion receipt per document in the audit log. Documents under
legal hold are kept and counted. Payloads left by failed uploads and spent
single-use tokens are collected too. Safe to run while vaults serve, and
from several machines at once.

The vault is opened with its local keyset (the KEK file); the passphrase is
read from --passphrase-file or $IDVAULT_PASSPHRASE. On a terminal a progress
bar is drawn on stderr; otherwise one summary line is printed.

The acting principal (--as, default $IDVAULT_ACTOR) is required: it is
recorded in the sweep's audit records and every deletion receipt.

Example:
  IDVAULT_PASSPHRASE=... idvault sweep --as cron:sweep --store /var/lib/idvault/store --kek-file /etc/idvault/kek
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		kekFile := fs.String("kek-file", "", "the local keyset `FILE` (default $IDVAULT_KEK_FILE)")
		passFile := fs.String("passphrase-file", "", "read the keyset passphrase from `FILE` (default $IDVAULT_PASSPHRASE)")
		actor := fs.String("as", "", "the acting `PRINCIPAL` recorded in the audit log (default $IDVAULT_ACTOR); required")
		return func(ctx context.Context, c *cli) int {
			return c.sweep(ctx, *storeURL, *kekFile, *passFile, *actor)
		}
	},
}

func (c *cli) sweep(ctx context.Context, storeURL, kekFile, passFile, actor string) int {
	spec, err := c.storeSpecFrom(storeURL)
	if err != nil {
		return c.usageError(err.Error())
	}
	if actor == "" {
		actor = c.env("IDVAULT_ACTOR")
	}
	if actor == "" {
		return c.usageError("no acting principal: pass --as or set IDVAULT_ACTOR (it is recorded in the audit log)")
	}
	if kekFile == "" {
		kekFile = c.env("IDVAULT_KEK_FILE")
	}
	if kekFile == "" {
		return c.usageError("no keyset: pass --kek-file or set IDVAULT_KEK_FILE")
	}
	var pass []byte
	if passFile != "" {
		b, err := os.ReadFile(passFile)
		if err != nil {
			return c.fail(fmt.Errorf("reading the passphrase file: %w", err))
		}
		pass = []byte(strings.TrimRight(string(b), "\r\n"))
	} else {
		pass = []byte(c.env("IDVAULT_PASSPHRASE"))
	}
	if len(pass) == 0 {
		return c.usageError("no passphrase: pass --passphrase-file or set IDVAULT_PASSPHRASE")
	}
	kek, err := kms.OpenLocal(kekFile, pass)
	clear(pass)
	if err != nil {
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
	start := time.Now()
	var progress func(vault.SweepProgress)
	if isTerminal(c.stderr) {
		progress = func(p vault.SweepProgress) { drawBar(c.stderr, p) }
	}
	rep, err := v.SweepWithProgress(ctx, vault.Actor{Principal: actor, Reason: "idvault sweep"}, progress)
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

// drawBar redraws a one-line progress bar.
func drawBar(w io.Writer, p vault.SweepProgress) {
	const width = 30
	filled := 0
	if p.Total > 0 {
		filled = width * p.Done / p.Total
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d  expired %d  held %d ", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		p.Done, p.Total, p.Report.Expired, p.Report.Held)
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
