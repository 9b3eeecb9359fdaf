package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// auditVerifierKey is where the vault publishes its audit verifier key.
const auditVerifierKey = "system/audit-verifier"

// maxKeyFile bounds a verifier key file or object (a key is one short line).
const maxKeyFile = 64 << 10

var verifyCommand = &command{
	path:    "audit verify",
	summary: "check the audit log for edits, deletions, forks and rollbacks",
	usage:   "audit verify [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--state FILE] [--require-sealed]",
	help: `Reads every audit log in the store and checks each record against the signed
checkpoints: edited, deleted, reordered, duplicated or inserted records,
truncation, bad or foreign signatures, forked or rolled-back checkpoints.

Prints one line per log (records, checkpoints, verified size) and a final
line, OK or FAILED: <first problem>. Exit status 0 when every log verifies,
1 when any problem is found (or the store holds no audit log at all, which
proves nothing), 2 on usage or I/O errors.

Pin the verifier key: pass it with --verifier-key or --verifier-key-file
(the vault's AuditVerifierKey). Without one, the key is read from the store
itself (system/audit-verifier), which proves only that the log is consistent
with whatever key sits beside it: whoever can rewrite the log can replace
that key too.

With --state FILE, the latest verified tree of each log is remembered (JSON)
and checked next time, which catches a log rolled back or replaced as a
whole, and a log that disappeared. The file is created on the first run and
updated only when verification succeeds.

Records written after a live log's last checkpoint are shown as an unsealed
tail, with a warning: not a failure, since a running or crashed writer
leaves one, but not protected either: whoever deletes a log's final
checkpoint turns its last records into such a tail and can then edit them.
When every writer has been closed (the vault shut down cleanly), pass
--require-sealed to count any unsealed tail as a failure.

Example:
  idvault audit verify --store file:///var/lib/idvault \
      --verifier-key-file /etc/idvault/audit.pub --state /var/lib/idvault-verify.state
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		key := fs.String("verifier-key", "", "the audit verifier `KEY` (a note verifier key: name+hash+keydata), pinned outside the store")
		keyFile := fs.String("verifier-key-file", "", "read the audit verifier key from `FILE`")
		statePath := fs.String("state", "", "remember verified checkpoints in the JSON `FILE` and check them next time")
		sealed := fs.Bool("require-sealed", false, "fail when any log has records after its last checkpoint (use once every writer is closed)")
		return func(ctx context.Context, c *cli) int {
			return c.verify(ctx, verifyArgs{*storeURL, *key, *keyFile, *statePath, *sealed})
		}
	},
}

// verifyArgs are the flags of audit verify.
type verifyArgs struct {
	storeURL, key, keyFile, statePath string
	requireSealed                     bool
}

func (c *cli) verify(ctx context.Context, a verifyArgs) int {
	key, keyFile, statePath := a.key, a.keyFile, a.statePath
	spec, err := c.storeSpecFrom(a.storeURL)
	if err != nil {
		return c.usageError(err.Error())
	}
	if key != "" && keyFile != "" {
		return c.usageError("pass --verifier-key or --verifier-key-file, not both")
	}
	if keyFile != "" {
		b, err := readSmallFile(keyFile, maxKeyFile)
		if err != nil {
			return c.fail(fmt.Errorf("verifier key file: %w", err))
		}
		key = string(b)
	}
	pinned := key != ""
	if pinned {
		if key, err = checkVerifierKey(key); err != nil {
			return c.usageError(err.Error())
		}
	}

	var st0 state
	if statePath != "" {
		var first bool
		if st0, first, err = readState(statePath); err != nil {
			return c.fail(err)
		}
		if first {
			// Fail now rather than after printing OK.
			if fi, err := os.Stat(filepath.Dir(statePath)); err != nil || !fi.IsDir() {
				return c.fail(fmt.Errorf("%w: its directory does not exist", errState))
			}
			fmt.Fprintf(c.stderr, "note: state file %s does not exist yet; it will be created if verification succeeds\n", statePath)
		}
	}

	st, err := openStore(ctx, spec, c.env)
	if err != nil {
		return c.fail(err)
	}
	if !pinned {
		if key, err = publishedKey(ctx, st); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stderr, "warning: the verifier key was read from the store itself (%s).\n"+
			"  That proves only internal consistency: whoever can rewrite the log can replace the key.\n"+
			"  Pin it: --verifier-key %s\n", auditVerifierKey, key)
	}

	rep, verr := audit.Verify(ctx, st, key, audit.VerifyOptions{Trusted: st0.Logs})
	if verr != nil && !errors.Is(verr, audit.ErrTampered) {
		return c.fail(fmt.Errorf("verification did not finish: %w", verr))
	}

	out := bufio.NewWriter(c.stdout)
	var unsealed []audit.LogReport
	for _, l := range rep.Logs {
		writeLogLine(out, l)
		if l.Unsealed > 0 && l.Problem == nil {
			unsealed = append(unsealed, l)
		}
	}
	for _, l := range unsealed {
		fmt.Fprintf(c.stderr, "warning: log %s: the last %d records are not covered by any signed checkpoint, so edits to them cannot be detected\n", l.Log, l.Unsealed)
	}
	code := exitOK
	switch ps := rep.Problems(); {
	case len(ps) > 0:
		fmt.Fprintf(out, "FAILED: %s\n", ps[0])
		code = exitFailed
	case len(rep.Logs) == 0:
		fmt.Fprintln(out, "FAILED: no audit log in the store")
		code = exitFailed
	case a.requireSealed && len(unsealed) > 0:
		fmt.Fprintf(out, "FAILED: log %s: unsealed tail of %d records (--require-sealed)\n", unsealed[0].Log, unsealed[0].Unsealed)
		code = exitFailed
	default:
		fmt.Fprintln(out, "OK")
	}
	if err := out.Flush(); err != nil {
		return c.fail(err)
	}
	if code == exitOK && statePath != "" {
		next := st0.merge(rep)
		if err := writeState(statePath, next); err != nil {
			return c.fail(fmt.Errorf("writing state file: %w", err))
		}
		fmt.Fprintf(c.stderr, "state: %d logs saved to %s\n", len(next.Logs), statePath)
	}
	return code
}

// writeLogLine prints one log's summary, and its problem on a second line.
func writeLogLine(w io.Writer, l audit.LogReport) {
	fmt.Fprintf(w, "log %s: %d records, %d checkpoints, verified size %d", l.Log, l.Records, l.Checkpoints, l.Verified.N)
	if l.Final {
		fmt.Fprint(w, ", final")
	}
	if l.Unsealed > 0 {
		fmt.Fprintf(w, ", unsealed tail %d", l.Unsealed)
	}
	if l.Continues != "" {
		fmt.Fprintf(w, ", continues log %s at size %d", l.Continues, l.ContinuesSize)
	}
	if l.Problem != nil {
		fmt.Fprintf(w, ", FAILED\n  problem: %s", l.Problem)
	}
	fmt.Fprintln(w)
}

// checkVerifierKey trims and checks a verifier key. The errors never quote
// the key: a caller who pasted the private signer key by mistake must not
// see it echoed into a terminal log.
func checkVerifierKey(key string) (string, error) {
	key = strings.TrimSpace(key)
	if strings.HasPrefix(key, "PRIVATE+KEY+") {
		return "", errors.New("that is the private signer key; pass the public verifier key (name+hash+keydata) and keep the signer key secret")
	}
	// Only graphic characters: the key is printed, and a key from the
	// store must not smuggle terminal escapes into an operator's screen.
	if key == "" || strings.ContainsFunc(key, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) {
		return "", errors.New("the verifier key must be one line of printable characters")
	}
	if _, err := note.NewVerifier(key); err != nil {
		return "", errors.New("not a valid verifier key (want name+hash+keydata, as printed by the vault)")
	}
	return key, nil
}

// publishedKey reads the verifier key the vault published in the store.
func publishedKey(ctx context.Context, st store.Store) (string, error) {
	rc, err := st.Get(ctx, auditVerifierKey)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("no verifier key published in the store (%s); pass --verifier-key or --verifier-key-file", auditVerifierKey)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", auditVerifierKey, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxKeyFile+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", auditVerifierKey, err)
	}
	if len(b) > maxKeyFile {
		return "", fmt.Errorf("%s is larger than %d bytes", auditVerifierKey, maxKeyFile)
	}
	key, err := checkVerifierKey(string(b))
	if err != nil {
		return "", fmt.Errorf("%s: %w", auditVerifierKey, err)
	}
	return key, nil
}

// readSmallFile reads a file of at most max bytes.
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
