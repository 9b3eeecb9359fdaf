package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/idvault/idvault/vault/audit"
)

var checkpointCommand = &command{
	path:    "audit checkpoint",
	summary: "print the latest signed checkpoint of every log and the state chain's head, for a witness to keep",
	usage:   "audit checkpoint [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--out FILE]",
	help: `Prints the latest signed checkpoint of every audit log, each exactly as
stored: a signed note in the golang.org/x/mod/sumdb/note format (the text,
a blank line, the signature line "— <key name> <base64>"), followed by a
blank line. The text of each note is

  idvault audit checkpoint v1
  <log ID>
  <tree size>
  <tree hash, base64>
  <time, RFC 3339 UTC>
  final            (only once the log was closed)

When the state chain (legal holds, releases, freezes) is not empty, its
last entry follows, exactly as stored: a signed note whose text starts
"idvault state v1". The whole chain is read and checked first; a broken
chain is an error (exit 1), since its head would vouch for nothing.

Keep the output somewhere the store's writers cannot reach (a transparency
log witness, another account, a cron job's mailbox). Later,
"idvault audit verify --witness FILE" checks that every log still holds at
least those records with the same tree hash, and that the state chain still
holds that entry: records erased together with their checkpoints, and
chain entries removed, after the heads were taken are caught, which
nothing inside the store can show. Only checkpoints whose signature
verifies with the key are printed; it does not check the records (verify
does).

With --out FILE the notes are written to FILE atomically instead of stdout.

Example (hourly, from cron):
  idvault audit checkpoint --store s3://audit?endpoint=minio:9000 \
      --verifier-key-file /etc/idvault/audit.pub --out /srv/witness/idvault.heads
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		kf := addKeyFlags(fs)
		out := fs.String("out", "", "write the checkpoints to `FILE` (replaced atomically) instead of stdout")
		return func(ctx context.Context, c *cli) int {
			return c.checkpoint(ctx, *storeURL, kf, *out)
		}
	},
}

func (c *cli) checkpoint(ctx context.Context, storeURL string, kf *keyFlags, out string) int {
	st, key, code := c.openKeyedURL(ctx, storeURL, kf)
	if code != 0 {
		return code
	}
	heads, err := audit.Heads(ctx, st, key)
	if err != nil {
		return c.fail(err)
	}
	sh, stateNote, err := audit.LatestState(ctx, st, key)
	if errors.Is(err, audit.ErrStateBroken) {
		fmt.Fprintf(c.stderr, "idvault %s: FAILED: %v\n", c.cmd.path, err)
		return exitFailed
	}
	if err != nil {
		return c.fail(err)
	}
	b := audit.FormatHeads(heads)
	if stateNote != nil {
		b = append(append(b, stateNote...), '\n')
	}
	if out == "" {
		if _, err := c.stdout.Write(b); err != nil {
			return c.fail(err)
		}
	} else {
		if err := writeFileAtomic(out, b, 0o600); err != nil {
			return c.fail(fmt.Errorf("writing %s: %w", out, err))
		}
	}
	fmt.Fprintf(c.stderr, "%d signed checkpoints", len(heads))
	if stateNote != nil {
		fmt.Fprintf(c.stderr, " and the state chain's head (%d entries)", sh.Length)
	}
	fmt.Fprintln(c.stderr)
	return exitOK
}
