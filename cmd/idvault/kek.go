package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

var kekCommand = &command{
	path:    "kek",
	summary: "show which KEKs wrap the vault: key records per KEK ID",
	usage:   "kek [--store URL]",
	help: `Counts the vault's key records per KEK ID, read from each record's clear
header (nothing is unwrapped, no KEK or passphrase is needed), and names the
KEK that wraps the vault's own keyset. After "idvault kek rewrap", an old KEK
that appears nowhere here (and that no instance still wraps with) can be
disabled.

Example:
  idvault kek --store /var/lib/idvault/store
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		return func(ctx context.Context, c *cli) int { return c.kekUsage(ctx, *storeURL) }
	},
}

var kekRewrapCommand = &command{
	path:    "kek rewrap",
	summary: "re-wrap every key record and the keyset under a new KEK",
	usage:   "kek rewrap [--store URL] --from URI --to URI --as PRINCIPAL [--passphrase SOURCE]",
	help: `Re-wraps every data key, and the vault's own keyset, from the KEK --from to
the KEK --to, without touching payloads. The vault ID, every document and
every token survive. Safe while other instances serve, provided each can open
both KEKs (vault.Config.DecryptKEKs); resumable: after a crash, run it again
and it skips what is done. Audited (start and end) with --as.

Local keysets' passphrases come from --from-passphrase / --to-passphrase, or
--passphrase for both (file:PATH, env:NAME, prompt; default
env:IDVAULT_PASSPHRASE). On a terminal a progress bar is drawn on stderr;
otherwise one summary line is printed. "remaining" counts records still under
--from at the end (written by an instance that still wraps with it).

Example:
  idvault kek rewrap --store /var/lib/idvault/store --as alice@sec --from local:/etc/idvault/kek-2025 --to local:/etc/idvault/kek-2026 --passphrase prompt
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		from := fs.String("from", "", "the `URI` of the KEK the vault is wrapped with now")
		to := fs.String("to", "", "the `URI` of the KEK to re-wrap under")
		pass := fs.String("passphrase", "", "passphrase `source` of local: keysets (file:PATH, env:NAME, prompt; default env:IDVAULT_PASSPHRASE)")
		fromPass := fs.String("from-passphrase", "", "passphrase `source` of --from, if it differs")
		toPass := fs.String("to-passphrase", "", "passphrase `source` of --to, if it differs")
		actor := fs.String("as", "", "the acting `principal` recorded in the audit log (default $IDVAULT_ACTOR); required")
		reason := fs.String("reason", "idvault kek rewrap", "why, recorded in the audit log (a ticket)")
		return func(ctx context.Context, c *cli) int {
			return c.kekRewrap(ctx, *storeURL, *from, *to, *pass, *fromPass, *toPass, vault.Actor{Principal: *actor, Reason: *reason})
		}
	},
}

func init() { commands = append(commands, kekCommand, kekRewrapCommand) }

func (c *cli) kekUsage(ctx context.Context, storeURL string) int {
	spec, err := c.storeSpecFrom(storeURL)
	if err != nil {
		return c.usageError(err.Error())
	}
	st, err := openStore(ctx, spec, c.env)
	if err != nil {
		return c.fail(err)
	}
	u, err := vault.ReadKEKUsage(ctx, st, nil)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "keyset wrapped by %s\n", u.Keyset)
	ids := make([]string, 0, len(u.Records))
	for id := range u.Records {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(c.stdout, "%8d key records wrapped by %s\n", u.Records[id], id)
	}
	if len(ids) == 0 {
		fmt.Fprintln(c.stdout, "       0 key records")
	}
	if u.Unreadable > 0 {
		fmt.Fprintf(c.stdout, "%8d key records with an unreadable header\n", u.Unreadable)
	}
	return exitOK
}

func (c *cli) kekRewrap(ctx context.Context, storeURL, fromURI, toURI, pass, fromPass, toPass string, by vault.Actor) int {
	spec, err := c.storeSpecFrom(storeURL)
	if err != nil {
		return c.usageError(err.Error())
	}
	if by.Principal == "" {
		by.Principal = c.env("IDVAULT_ACTOR")
	}
	if by.Principal == "" {
		return c.usageError("no acting principal: pass --as or set IDVAULT_ACTOR (it is recorded in the audit log)")
	}
	if fromURI == "" || toURI == "" {
		return c.usageError("both --from and --to are required")
	}
	source := func(spec string) (kms.PassphraseSource, error) {
		if spec == "" {
			spec = pass
		}
		if spec == "" {
			return envPassphrase{c.env, "IDVAULT_PASSPHRASE"}, nil
		}
		return c.parsePassphraseSource(spec)
	}
	fromSrc, err := source(fromPass)
	if err != nil {
		return c.usageError(err.Error())
	}
	toSrc, err := source(toPass)
	if err != nil {
		return c.usageError(err.Error())
	}
	from, err := c.openKEKURI(ctx, fromURI, fromSrc)
	if err != nil {
		return c.fail(fmt.Errorf("--from: %w", err))
	}
	to, err := c.openKEKURI(ctx, toURI, toSrc)
	if err != nil {
		return c.fail(fmt.Errorf("--to: %w", err))
	}
	st, err := openStore(ctx, spec, c.env)
	if err != nil {
		return c.fail(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: to, DecryptKEKs: []kms.KEK{from}})
	if err != nil {
		return c.fail(err)
	}
	start := time.Now()
	var opts vault.RewrapOptions
	if isTerminal(c.stderr) {
		opts.Progress = func(p vault.RewrapProgress) { drawRewrapBar(c.stderr, p) }
	}
	rep, err := v.Rewrap(ctx, from, to, by, opts)
	if opts.Progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if cerr := v.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return c.fail(err)
	}
	el := time.Since(start)
	rate := ""
	if s := el.Seconds(); s > 0 && rep.Rewrapped > 0 {
		rate = fmt.Sprintf(" (%.0f/s)", float64(rep.Rewrapped)/s)
	}
	fmt.Fprintf(c.stdout, "rewrapped in %s%s: keyset %s, %d key records rewrapped, %d already under the new KEK, %d under another KEK, %d deleted meanwhile, %d busy with a sweeper, %d remaining under the old KEK\n",
		el.Round(time.Millisecond), rate, map[bool]string{true: "rewrapped", false: "already done"}[rep.Keyset],
		rep.Rewrapped, rep.Already, rep.Other, rep.Gone, rep.Busy, rep.Remaining)
	return exitOK
}

// drawRewrapBar redraws a one-line progress bar.
func drawRewrapBar(w io.Writer, p vault.RewrapProgress) {
	const width = 30
	filled := 0
	if p.Total > 0 {
		filled = width * p.Done / p.Total
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d  rewrapped %d ", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		p.Done, p.Total, p.Report.Rewrapped)
}
