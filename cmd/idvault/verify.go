package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

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
	usage:   "audit verify [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--state FILE [--state-key-file FILE] [--init-state]] [--witness FILE] [--require-sealed] [--format text|json]",
	help: `Reads every audit log in the store and checks each record against the signed
checkpoints: edited, deleted, reordered, duplicated or inserted records,
truncation, bad or foreign signatures, forked or rolled-back checkpoints.
Every log must be registered (audit/_registry/<log>, written and signed
before its first record), so a log copied in, or one whose entry was
deleted, is caught; and every log must still hold what anything signed
says it held: its registry entry (it existed), its latest lease (a signed
tree head; a released lease says it was closed at that size), and the
witness records other vault instances write into their own logs
("log-head": they read that log up to that size). So a log truncated or
deleted as a whole is caught without --state, whatever records it held.
A log with records but no valid checkpoint fails once its newest record is
older than --unsigned-grace: a writer signs within seconds.

The state chain (audit/_state/: legal holds, releases, freezes and
unfreezes) is read whole: a broken chain fails, and so does one shorter
than, or different from, what a "state-head" witness record vouches for.
Its length and head are printed when it is not empty.

Only what a valid checkpoint covers counts as evidence: records of an
unsealed tail may be anybody's. What all of this cannot see: something
deleted together with every trace of it (records, checkpoints, registry
entry, lease and every witness record naming it); a store that holds the
audit log write-once (object lock) keeps the traces, a filesystem does
not. See docs/audit.md for exactly what is proved with and without --state
and --witness.

Prints one line per log (records, checkpoints, verified size) and a final
line, OK or FAILED: <first problem>; with --format json, one JSON object
(fields below). Exit status 0 when every log verifies, 1 when any problem
is found (or the store holds no audit log at all, which proves nothing), 2
on usage or I/O errors.

Pin the verifier key: pass it with --verifier-key or --verifier-key-file
(the vault's AuditVerifierKey). Without one, the key is read from the store
itself (system/audit-verifier), which proves only that the log is consistent
with whatever key sits beside it: whoever can rewrite the log can replace
that key too.

With --state FILE, the verifier key (pinned on first use: a different key
later fails), the head of the state chain, the latest verified tree of each
log and the size of its latest final checkpoint are remembered (JSON) and
checked next time, which catches a log rolled back, replaced or deleted as
a whole with every trace of it, a closed log whose final checkpoint was
deleted to append records, a state chain cut back or rewritten, and
checkpoints re-signed with another key. The file is created on the first
run and updated only when verification succeeds.

Authenticate the state file: make a key with "idvault audit state-key",
keep it apart from the state file, and pass --state-key-file KEYFILE (or
set IDVAULT_STATE_KEY_FILE). The file then carries a MAC, and a state file
that fails authentication, has no MAC or is missing is an error (exit 2);
--init-state accepts a missing or unauthenticated one once, to start.
Without a key, verify warns: whoever can write an unauthenticated state
file can remove a log's entry (dropping its protection), unpin the
verifier key or lower the chain's head, and verify cannot tell. A keyed
state file without its key is an error, never silently trusted.

With --witness FILE, the signed checkpoints (and state chain head) that
"idvault audit checkpoint" printed earlier (kept outside the store) are
checked as well: each log must still hold at least those records, with the
same tree hash, and the state chain at least that entry. This catches
records erased together with their checkpoints, and chain entries removed,
after the witness was taken, which nothing inside the store can show. An
empty or garbled witness file fails: it vouches for nothing.

Records written after a live log's last checkpoint are shown as an unsealed
tail, with a warning: not a failure, since a running writer leaves one for
up to a second (and a crashed one until the next vault continues its log),
but not protected either. Query and stats leave them out unless asked.
When every writer has been closed (the vault shut down cleanly), pass
--require-sealed to count any unsealed tail as a failure.

JSON output: {"ok": bool, "problem": "<first problem>" or "",
"state": {"length", "head" (base64, "" when empty), "problem": {…} or null},
"logs": [{"log", "records", "checkpoints", "verified_size", "verified_hash",
"final" (closed), "final_size", "unsealed", "continues", "continues_size",
"registered" (RFC 3339 or ""), "newest" (RFC 3339 or ""),
"problem": {"class", "seq", "key", "detail"} or null}]}.

Example:
  idvault audit verify --store file:///var/lib/idvault \
      --verifier-key-file /etc/idvault/audit.pub --state /var/lib/idvault-verify/state \
      --state-key-file /etc/idvault/verify-state.key
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		kf := addKeyFlags(fs)
		statePath := fs.String("state", "", "remember the verifier key, the state chain's head, verified checkpoints and closed logs in the JSON `FILE` and check them next time")
		stateKeyFile := fs.String("state-key-file", "", "authenticate the --state file with the key in `FILE` (made by idvault audit state-key; default $IDVAULT_STATE_KEY_FILE)")
		initState := fs.Bool("init-state", false, "with a state key: accept a missing or unauthenticated --state file this once, and write it keyed")
		witness := fs.String("witness", "", "check the store against the signed checkpoints in `FILE` (the output of idvault audit checkpoint)")
		sealed := fs.Bool("require-sealed", false, "fail when any log has records after its last checkpoint (use once every writer is closed)")
		grace := fs.Duration("unsigned-grace", audit.DefaultUnsignedGrace, "fail a log with records but no valid checkpoint once its newest record is older than `DURATION`")
		format := fs.String("format", "text", "output `FORMAT`: text or json")
		return func(ctx context.Context, c *cli) int {
			return c.verify(ctx, verifyArgs{*storeURL, kf, *statePath, *stateKeyFile, *initState, *witness, *sealed, *grace, *format})
		}
	},
}

// verifyArgs are the flags of audit verify.
type verifyArgs struct {
	storeURL      string
	keys          *keyFlags
	statePath     string
	stateKeyFile  string
	initState     bool
	witness       string
	requireSealed bool
	grace         time.Duration
	format        string
}

// keyFlags are --verifier-key and --verifier-key-file.
type keyFlags struct{ key, file *string }

func addKeyFlags(fs *flag.FlagSet) *keyFlags {
	return &keyFlags{
		key:  fs.String("verifier-key", "", "the audit verifier `KEY` (a note verifier key: name+hash+keydata), pinned outside the store"),
		file: fs.String("verifier-key-file", "", "read the audit verifier key from `FILE`"),
	}
}

// pinnedKey returns the key given by the flags ("" when none); a usage
// problem is returned as usage true.
func (kf *keyFlags) pinnedKey() (key string, usage bool, err error) {
	key = *kf.key
	if key != "" && *kf.file != "" {
		return "", true, errors.New("pass --verifier-key or --verifier-key-file, not both")
	}
	if *kf.file != "" {
		b, err := readSmallFile(*kf.file, maxKeyFile)
		if err != nil {
			return "", false, fmt.Errorf("verifier key file: %w", err)
		}
		key = string(b)
	}
	if key == "" {
		return "", false, nil
	}
	key, err = checkVerifierKey(key)
	return key, err != nil, err
}

// resolveKey returns the pinned key, or the one the store publishes with a
// warning on stderr. code is non-zero when the command must stop.
func (c *cli) resolveKey(ctx context.Context, st store.Store, kf *keyFlags) (string, int) {
	key, usage, err := kf.pinnedKey()
	switch {
	case err != nil && usage:
		return "", c.usageError(err.Error())
	case err != nil:
		return "", c.fail(err)
	case key != "":
		return key, 0
	}
	if key, err = publishedKey(ctx, st); err != nil {
		return "", c.fail(err)
	}
	fmt.Fprintf(c.stderr, "warning: the verifier key was read from the store itself (%s).\n"+
		"  That proves only internal consistency: whoever can rewrite the log can replace the key.\n"+
		"  Pin it: --verifier-key %s\n", auditVerifierKey, key)
	return key, 0
}

// openKeyedURL opens the store named by the --store value raw (or
// IDVAULT_STORE) with openKeyed.
func (c *cli) openKeyedURL(ctx context.Context, raw string, kf *keyFlags) (store.Store, string, int) {
	spec, err := c.storeSpecFrom(raw)
	if err != nil {
		return nil, "", c.usageError(err.Error())
	}
	return c.openKeyed(ctx, spec, kf)
}

// openKeyed opens the store of spec and resolves its verifier key with
// resolveKey. code is non-zero when the command must stop.
func (c *cli) openKeyed(ctx context.Context, spec storeSpec, kf *keyFlags) (store.Store, string, int) {
	st, err := openStore(ctx, spec, c.env)
	if err != nil {
		return nil, "", c.fail(err)
	}
	key, code := c.resolveKey(ctx, st, kf)
	return st, key, code
}

// maxWitnessFile bounds a witness file: a few hundred bytes per log.
const maxWitnessFile = 16 << 20

func (c *cli) verify(ctx context.Context, a verifyArgs) int {
	statePath := a.statePath
	spec, err := c.storeSpecFrom(a.storeURL)
	if err != nil {
		return c.usageError(err.Error())
	}
	if a.format != "text" && a.format != "json" {
		return c.usageError("--format must be text or json")
	}
	if a.grace <= 0 {
		return c.usageError("--unsigned-grace must be positive")
	}
	if _, usage, err := a.keys.pinnedKey(); err != nil {
		if usage {
			return c.usageError(err.Error())
		}
		return c.fail(err)
	}
	var witnessRaw []byte
	if a.witness != "" {
		if witnessRaw, err = readSmallFile(a.witness, maxWitnessFile); err != nil {
			return c.fail(fmt.Errorf("witness file: %w", err))
		}
	}

	st0 := newState()
	var skey stateKey
	if statePath != "" {
		if skey, err = c.readStateKey(a.stateKeyFile); err != nil {
			return c.fail(err)
		}
		if st0, err = c.loadState(statePath, skey, a.initState); err != nil {
			return c.fail(err)
		}
	} else if a.stateKeyFile != "" || a.initState {
		return c.usageError("--state-key-file and --init-state go with --state")
	}

	st, key, code := c.openKeyed(ctx, spec, a.keys)
	if code != 0 {
		return code
	}
	opts := audit.VerifyOptions{Trusted: map[string]tlog.Tree{}, Finals: map[string]int64{}, UnsignedGrace: a.grace, Now: func() time.Time { return c.now }, State: st0.Chain}
	for id, t := range st0.Logs {
		opts.Trusted[id] = t
	}
	for id, n := range st0.Finals {
		opts.Finals[id] = n
	}
	var pre []string // failures found before reading the store's logs
	if st0.Key != "" && st0.Key != key {
		pre = append(pre, "the verifier key differs from the one pinned in the state file: checkpoints re-signed with another key, or a key rotation to confirm by hand")
	}
	if witnessRaw != nil {
		heads, sh, err := audit.ParseWitness(witnessRaw, key)
		if err != nil {
			pre = append(pre, "witness file: "+strings.TrimPrefix(err.Error(), audit.ErrCorrupt.Error()+": "))
		}
		switch {
		case sh.Length == opts.State.Length && sh.Hash != opts.State.Hash:
			pre = append(pre, fmt.Sprintf("the witness and the state file vouch for different state chains of %d entries", sh.Length))
		case sh.Length > opts.State.Length:
			opts.State = sh
		}
		for _, h := range heads {
			t, ok := opts.Trusted[h.Log]
			switch {
			case ok && t.N == h.Tree.N && t.Hash != h.Tree.Hash:
				pre = append(pre, fmt.Sprintf("log %s: the witness and the state file sign different trees of size %d", h.Log, t.N))
			case !ok || h.Tree.N > t.N:
				opts.Trusted[h.Log] = h.Tree
			}
			if h.Final && h.Tree.N > opts.Finals[h.Log] {
				opts.Finals[h.Log] = h.Tree.N
			}
		}
	}

	rep, verr := audit.Verify(ctx, st, key, opts)
	if verr != nil && !errors.Is(verr, audit.ErrTampered) {
		return c.fail(fmt.Errorf("verification did not finish: %w", verr))
	}
	// The single-use ledger against the logs, both ways: every ledger entry
	// (a signed release record) folded into a log, and no release record
	// whose entry is gone before its keep-until time.
	// It runs only on logs that verified: on tampered ones the verdict is
	// already given, and their records cannot be trusted to check against.
	ledger := &audit.LedgerReport{}
	if verr == nil && len(rep.Problems()) == 0 {
		l, lerr := audit.CheckLedger(ctx, st, key, audit.LedgerCheckOptions{})
		switch {
		case lerr == nil:
			ledger = l
		case errors.Is(lerr, audit.ErrCorrupt):
			pre = append(pre, "single-use ledger: "+lerr.Error())
		default:
			return c.fail(fmt.Errorf("the single-use ledger check did not finish: %w", lerr))
		}
	}
	if ledger.Entries > 0 {
		fmt.Fprintf(c.stderr, "ledger: %d ledger entries, %d folded into a log, %d void, %d pending\n", ledger.Entries, ledger.Folded, ledger.Void, ledger.Pending)
	}
	var unsealed []audit.LogReport
	for _, l := range rep.Logs {
		if l.Unsealed > 0 && l.Problem == nil {
			unsealed = append(unsealed, l)
		}
	}
	for _, l := range unsealed {
		fmt.Fprintf(c.stderr, "warning: log %s: the last %d records are not covered by any signed checkpoint yet, so edits to them cannot be detected; query and stats leave them out\n", l.Log, l.Unsealed)
	}
	failure := ""
	switch ps := rep.Problems(); {
	case len(pre) > 0:
		failure = pre[0]
	case len(ps) > 0:
		failure = ps[0].String()
	case len(ledger.Problems) > 0:
		failure = "single-use ledger: " + ledger.Problems[0]
	case len(rep.Logs) == 0:
		failure = "no audit log in the store"
	case a.requireSealed && len(unsealed) > 0:
		failure = fmt.Sprintf("log %s: unsealed tail of %d records (--require-sealed)", unsealed[0].Log, unsealed[0].Unsealed)
	}
	out := bufio.NewWriter(c.stdout)
	if a.format == "json" {
		writeVerifyJSON(out, rep, failure)
	} else {
		for _, l := range rep.Logs {
			writeLogLine(out, l)
		}
		if rep.State.Length > 0 || rep.State.Problem != nil {
			fmt.Fprintf(out, "state chain: %d entries, head %s", rep.State.Length, rep.State.Hash)
			if p := rep.State.Problem; p != nil {
				fmt.Fprintf(out, ", FAILED\n  problem: %s", p)
			}
			fmt.Fprintln(out)
		}
		if failure != "" {
			fmt.Fprintf(out, "FAILED: %s\n", failure)
		} else {
			fmt.Fprintln(out, "OK")
		}
	}
	if err := out.Flush(); err != nil {
		return c.fail(err)
	}
	if failure != "" {
		return exitFailed
	}
	if statePath != "" {
		next := st0.merge(rep, key)
		if err := writeState(statePath, next, skey); err != nil {
			return c.fail(fmt.Errorf("writing state file: %w", err))
		}
		fmt.Fprintf(c.stderr, "state: %d logs saved to %s\n", len(next.Logs), statePath)
	}
	return exitOK
}

// verifyJSON is the --format json output of audit verify. The field names
// are part of the CLI's contract.
type verifyJSON struct {
	OK      bool            `json:"ok"`
	Problem string          `json:"problem"`
	State   verifyStateJSON `json:"state"`
	Logs    []verifyLogJSON `json:"logs"`
}

type verifyStateJSON struct {
	Length  int64        `json:"length"`
	Head    string       `json:"head"`
	Problem *problemJSON `json:"problem"`
}

type verifyLogJSON struct {
	Log           string       `json:"log"`
	Records       int64        `json:"records"`
	Checkpoints   int          `json:"checkpoints"`
	VerifiedSize  int64        `json:"verified_size"`
	VerifiedHash  string       `json:"verified_hash"`
	Final         bool         `json:"final"`
	FinalSize     int64        `json:"final_size"`
	Unsealed      int64        `json:"unsealed"`
	Continues     string       `json:"continues"`
	ContinuesSize int64        `json:"continues_size"`
	Registered    string       `json:"registered"`
	Newest        string       `json:"newest"`
	Problem       *problemJSON `json:"problem"`
}

type problemJSON struct {
	Class  string `json:"class"`
	Seq    int64  `json:"seq"`
	Key    string `json:"key"`
	Detail string `json:"detail"`
}

func rfc3339OrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func writeVerifyJSON(w io.Writer, rep *audit.Report, failure string) {
	v := verifyJSON{OK: failure == "", Problem: failure, Logs: []verifyLogJSON{}}
	v.State.Length = rep.State.Length
	if rep.State.Length > 0 {
		v.State.Head = rep.State.Hash.String()
	}
	if p := rep.State.Problem; p != nil {
		v.State.Problem = &problemJSON{Class: string(p.Class), Seq: p.Seq, Key: p.Key, Detail: p.Detail}
	}
	for _, l := range rep.Logs {
		j := verifyLogJSON{Log: l.Log, Records: l.Records, Checkpoints: l.Checkpoints, VerifiedSize: l.Verified.N,
			Final: l.Final, FinalSize: l.FinalSize, Unsealed: l.Unsealed, Continues: l.Continues, ContinuesSize: l.ContinuesSize,
			Registered: rfc3339OrEmpty(l.Registered), Newest: rfc3339OrEmpty(l.Newest)}
		if l.Verified.N > 0 {
			j.VerifiedHash = l.Verified.Hash.String()
		}
		if p := l.Problem; p != nil {
			j.Problem = &problemJSON{Class: string(p.Class), Seq: p.Seq, Key: p.Key, Detail: p.Detail}
		}
		v.Logs = append(v.Logs, j)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// loadState reads the --state file under the state key policy: with a
// key, the file must exist and carry a valid MAC (except, with init, a
// missing or unauthenticated file once); without one, a keyed file is
// refused and an unauthenticated one is used with a warning saying what
// it cannot protect.
func (c *cli) loadState(path string, key stateKey, init bool) (state, error) {
	s, first, err := readState(path, key)
	if err != nil {
		return state{}, err
	}
	switch {
	case key == nil && s.keyed:
		return state{}, fmt.Errorf("%w: the state file is authenticated; pass its key with --state-key-file (or IDVAULT_STATE_KEY_FILE)", errState)
	case key != nil && !s.keyed && !init && first:
		return state{}, fmt.Errorf("%w: %s does not exist, but a state key is configured: it was deleted, or this is the first run (pass --init-state once)", errState, path)
	case key != nil && !s.keyed && !init:
		return state{}, fmt.Errorf("%w: %s is not authenticated, but a state key is configured: it was rewritten without the key, or it predates the key (pass --init-state once to adopt it)", errState, path)
	case key == nil:
		fmt.Fprintf(c.stderr, "warning: the state file is not authenticated: whoever can write %s can remove a log from it (dropping that log's rollback protection), unpin the verifier key or lower the state chain's head, and verify cannot tell. Make a key with idvault audit state-key and pass --state-key-file.\n", path)
	}
	if first {
		// Fail now rather than after printing OK.
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			return state{}, fmt.Errorf("%w: its directory does not exist", errState)
		}
		fmt.Fprintf(c.stderr, "note: state file %s does not exist yet; it will be created if verification succeeds\n", path)
	}
	return s, nil
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
