package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

var kekCommand = &command{
	path:    "kek",
	summary: "show which KEKs wrap the vault: key records per KEK ID",
	usage:   "kek [--store URL] [--key-store URL]",
	help: `Counts the vault's key records per KEK ID, read from each record's clear
header (nothing is unwrapped, no KEK or passphrase is needed), and names the
KEK that wraps the vault's own keyset and the store the records were counted
in. After "idvault kek rewrap", an old KEK that appears nowhere here (and
that no instance still wraps with) can be disabled.

The key records are counted in the key store (--key-store, or key-store in
the deployment file), else in the data store. When none is named and the
data store cannot be where they are (it keeps object versions, as init's
object-locked data bucket does, or it holds payloads but not one key
record), it says so and exits 2 instead of counting 0.

Example:
  idvault kek --store /var/lib/idvault/store
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		keyStoreURL := keyStoreFlag(fs)
		return func(ctx context.Context, c *cli) int { return c.kekUsage(ctx, *storeURL, *keyStoreURL) }
	},
}

var kekRewrapCommand = &command{
	path:    "kek rewrap",
	summary: "re-wrap every key record and the keyset under a new KEK",
	usage:   "kek rewrap [--store URL] [--key-store URL] [--from URI] --to URI --as PRINCIPAL [--passphrase SOURCE]",
	help: `Re-wraps every data key, and the vault's own keyset, from the KEK --from to
the KEK --to, without touching payloads. The vault ID, every document and
every token survive. Safe while other instances serve, provided each can open
both KEKs (vault.Config.Storage.DecryptKEKs); resumable: after a crash, run it again
and it skips what is done. Audited (start and end) with --as.

--from defaults to the deployment's kek. When it came from the deployment
file and nothing remains under it, the file is updated to name --to (and
--to-passphrase, if given), so that every later command opens the vault with
the KEK that now wraps it. Make a local target with "idvault kek create".
It refuses to run where it cannot see the key records (see "idvault help
kek"): re-wrapping the keyset but not the records would leave them under a
KEK about to be disabled.

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
		keyStoreURL := keyStoreFlag(fs)
		from := fs.String("from", "", "the `URI` of the KEK the vault is wrapped with now (default $IDVAULT_KEK, else the deployment's kek)")
		to := fs.String("to", "", "the `URI` of the KEK to re-wrap under")
		pass := fs.String("passphrase", "", "passphrase `source` of local: keysets (file:PATH, env:NAME, prompt; default env:IDVAULT_PASSPHRASE)")
		fromPass := fs.String("from-passphrase", "", "passphrase `source` of --from, if it differs")
		toPass := fs.String("to-passphrase", "", "passphrase `source` of --to, if it differs")
		actor := fs.String("as", "", "the acting `PRINCIPAL` recorded in the audit log (default $IDVAULT_ACTOR); required")
		reason := fs.String("reason", "idvault kek rewrap", "why, recorded in the audit log (a ticket)")
		return func(ctx context.Context, c *cli) int {
			return c.kekRewrap(ctx, *storeURL, *keyStoreURL, *from, *to, *pass, *fromPass, *toPass, vault.Actor{Principal: *actor, Reason: *reason})
		}
	},
}

var kekCreateCommand = &command{
	path:    "kek create",
	summary: "create a local passphrase-protected keyset (a KEK to rewrap to)",
	usage:   "kek create local:PATH [--passphrase SOURCE]",
	args:    1,
	help: `Creates a new local keyset file at PATH: one fresh AES-256-GCM key,
encrypted under a key derived from the passphrase with argon2id (64 MiB, 3
passes), written with mode 0600. It never overwrites a file. The passphrase
comes from --passphrase (file:PATH, env:NAME, or prompt, which asks twice;
default: the deployment's passphrase source, else env:IDVAULT_PASSPHRASE)
and must be at least 12 characters.

The new keyset is the target of "idvault kek rewrap --to local:PATH"; the
last line of the output is its URI. Back the file up, and keep the
passphrase in a secret manager: without both, every document it wraps is
lost. For a KMS or an HSM key, use their own tools (aws kms create-key,
pkcs11-tool) and pass its URI.

Example:
  idvault kek create local:/etc/idvault/kek-2026 --passphrase file:/etc/idvault/kek-2026.pass
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		pass := fs.String("passphrase", "", "where the new keyset's passphrase comes from, a `SOURCE`: file:PATH, env:NAME or prompt (default $IDVAULT_PASSPHRASE_SOURCE, the deployment's, else env:IDVAULT_PASSPHRASE)")
		return func(ctx context.Context, c *cli) int {
			if len(c.args) != 1 {
				return c.usageError("name the keyset to create: local:PATH")
			}
			path, ok := strings.CutPrefix(c.args[0], "local:")
			if !ok || path == "" {
				return c.usageError("kek create makes local keysets: local:PATH (create KMS and HSM keys with their own tools)")
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				return c.usageError(err.Error())
			}
			var src kms.PassphraseSource = envPassphrase{c.env, "IDVAULT_PASSPHRASE"}
			if *pass != "" {
				if src, err = c.parsePassphraseSource(*pass); err != nil {
					return c.usageError(err.Error())
				}
			}
			if _, err := os.Lstat(abs); err == nil {
				return c.fail(fmt.Errorf("%s exists: kek create never overwrites a keyset", abs))
			}
			if code := c.createKeyset(ctx, abs, src); code != exitOK {
				return code
			}
			fmt.Fprintf(c.stdout, "use it with: idvault kek rewrap --to local:%s\nlocal:%s\n", abs, abs)
			return exitOK
		}
	},
}

func (c *cli) kekUsage(ctx context.Context, storeURL, keyStoreURL string) int {
	d, code := c.openStores(ctx, storeURL, keyStoreURL)
	if code != exitOK {
		return code
	}
	if err := checkKeysVisible(ctx, d); err != nil {
		return c.fail(err)
	}
	u, err := vault.ReadKEKUsage(ctx, d.data, d.keys)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "key records counted in %s\n", d.keysAt())
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

func (c *cli) kekRewrap(ctx context.Context, storeURL, keyStoreURL, fromURI, toURI, pass, fromPass, toPass string, by vault.Actor) int {
	var code int
	if by.Principal, code = c.actingPrincipal(by.Principal); code != exitOK {
		return code
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
	v, code := c.openVault(ctx, storeURL, keyStoreURL, checkKeysVisible, to, from)
	if code != exitOK {
		return code
	}
	start := time.Now()
	var opts vault.RewrapOptions
	if isTerminal(c.stderr) {
		opts.Progress = func(p vault.RewrapProgress) {
			drawBar(c.stderr, p.Done, p.Total, fmt.Sprintf("rewrapped %d", p.Report.Rewrapped))
		}
	}
	rep, err := v.Admin().Rewrap(ctx, from, to, by, opts)
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
	// The deployment named the old KEK: name the new one, once nothing is
	// left under the old.
	if o := c.origins["from"]; o.kind == "file" && c.deploy != nil {
		if rep.Remaining > 0 {
			fmt.Fprintf(c.stderr, "note: %d key records remain under the old KEK (an instance still wraps with it); the deployment file %s still names it: run the rewrap again once every instance uses the new KEK\n", rep.Remaining, c.deploy.path)
			return exitOK
		}
		changes := map[string]string{"kek": absKEKURI(toURI)}
		toSpec := toPass
		if toSpec == "" {
			toSpec = pass
		}
		if toSpec != "" && absPassphraseSource(toSpec) != c.deploy.values["passphrase"] {
			changes["passphrase"] = absPassphraseSource(toSpec)
		}
		if err := setDeploymentValues(c.deploy, changes); err != nil {
			return c.fail(fmt.Errorf("the rewrap is done, but updating the deployment file %s failed (set kek there by hand): %w", c.deploy.path, err))
		}
		fmt.Fprintf(c.stdout, "deployment file %s: kek now %s\n", c.deploy.path, absKEKURI(toURI))
	}
	return exitOK
}
