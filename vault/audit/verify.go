package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/store"
)

// Class names the kind of problem Verify found.
type Class string

// Problem classes.
const (
	// ClassCorrupt: a batch, record or checkpoint does not parse, a record
	// names another log, or an object's name does not match its content (a
	// renamed batch, an unexpected object).
	ClassCorrupt Class = "corrupt"
	// ClassGap: a record is missing: the next record found has a higher
	// sequence number than its position (a deleted first or middle record
	// or batch).
	ClassGap Class = "gap"
	// ClassTruncated: the log holds fewer records than something signed
	// vouches for: a checkpoint of the log, its latest lease (whose
	// frontier is a signed tree head), a witness record of another log
	// (log-head), or the "continues" record of the log that replaced it
	// (deleted last records, truncated tail).
	ClassTruncated Class = "truncated"
	// ClassReordered: records are out of sequence order (swapped).
	ClassReordered Class = "reordered"
	// ClassDuplicate: a byte-identical copy of an earlier record.
	ClassDuplicate Class = "duplicate"
	// ClassConflict: a second, different record claims a sequence number
	// already used (a forged record inserted without renumbering).
	ClassConflict Class = "conflict"
	// ClassMismatch: the records do not hash to the root a valid checkpoint
	// signed (a field edited, a forged record inserted and the rest
	// renumbered).
	ClassMismatch Class = "mismatch"
	// ClassPastFinal: records or checkpoints after the final checkpoint
	// written at Close (records appended by someone else).
	ClassPastFinal Class = "past-final"
	// ClassBadSignature: a checkpoint whose signature does not verify.
	ClassBadSignature Class = "bad-signature"
	// ClassUnknownKey: a checkpoint signed only by a key other than the
	// verifier key.
	ClassUnknownKey Class = "unknown-key"
	// ClassRollback: a checkpoint stored under a larger size than it
	// signed, a checkpoint older than a smaller one, a log shorter than a
	// trusted checkpoint (VerifyOptions.Trusted), or a log that is gone.
	ClassRollback Class = "rollback"
	// ClassFork: two validly signed views of one log that cannot both be
	// true: a checkpoint that disagrees with a later checkpoint matching the
	// records, or records that disagree with a trusted checkpoint.
	ClassFork Class = "fork"
	// ClassUnsigned: a log with records but no valid checkpoint, whose
	// newest record is older than VerifyOptions.UnsignedGrace: a writer
	// signs within seconds, so nobody with the key vouches for these
	// records (a log copied in, or one whose checkpoints were deleted).
	ClassUnsigned Class = "unsigned"
	// ClassUnregistered: a log that holds records but has no valid
	// registry entry (audit/_registry/<log>). Every appender writes the
	// entry before a log's first record, and Verify reads the registry
	// after listing the logs, so no grace applies: either the log was
	// copied in by someone without the key, or its entry was deleted, which
	// is what someone erasing the log as a whole does first.
	ClassUnregistered Class = "unregistered"
	// ClassMissing: a log that is gone or empty while something says it
	// had records: its registry entry (past UnsignedGrace), its latest
	// signed lease, a witness record of another log, the "continues"
	// record of the log that replaced it, or (with ClassRollback for the
	// last) the caller's earlier run: deleted as a whole.
	ClassMissing Class = "missing"
	// ClassReopened: a log that was closed at some size (the caller saw it
	// closed, VerifyOptions.Finals, or its latest lease is a signed release
	// at that size) no longer holds a valid final checkpoint of that size:
	// someone deleted it, typically to append records after it.
	ClassReopened Class = "reopened"
	// ClassStateBroken: the state chain (audit/_state/, see StateEntry) is
	// not one unbroken sequence of validly signed, linked entries.
	ClassStateBroken Class = "state-broken"
	// ClassWitness: a witness record (EventWitness) covered by a valid
	// checkpoint whose Detail does not parse.
	ClassWitness Class = "bad-witness"
)

// DefaultUnsignedGrace is the default VerifyOptions.UnsignedGrace: a
// writer's checkpoint interval plus the time another appender needs to
// take over and seal the log of a writer that crashed before its first
// checkpoint (DefaultLeaseTTL), with a margin.
const DefaultUnsignedGrace = 2 * time.Minute

// Problem is the first thing wrong in one log, or in the state chain.
type Problem struct {
	Log    string // "" for the state chain
	Seq    int64  // first record (or state entry) position concerned, or -1 when the problem is a checkpoint or object
	Key    string // storage key of the object concerned, if any
	Class  Class
	Detail string // what was expected and found: positions and sizes, never record contents
}

// String formats p for a human.
func (p Problem) String() string {
	s := "log " + p.Log + ": " + string(p.Class)
	if p.Log == "" {
		s = "state chain: " + string(p.Class)
	}
	if p.Seq >= 0 {
		s += " at seq " + strconv.FormatInt(p.Seq, 10)
	}
	if p.Key != "" {
		s += " (" + p.Key + ")"
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// LogReport is what Verify found in one log.
type LogReport struct {
	Log         string
	Records     int64     // records read (up to a corrupt object, if any)
	Checkpoints int       // checkpoint objects found
	Verified    tlog.Tree // the largest tree verified against a signed (or trusted) checkpoint with nothing wrong before it; save it as VerifyOptions.Trusted next time
	Final       bool      // closed: a final checkpoint covers exactly the records
	// Unsealed counts the records of a live (non-final) log after its last
	// checkpoint. They are not a failure: a writer checkpoints at intervals,
	// and a crashed or abandoned writer leaves such a tail. They are not
	// protected either, until a checkpoint covers them.
	Unsealed      int64
	Continues     string    // the log this one replaces (see Appender), if its first record says so
	ContinuesSize int64     // how many records of Continues that record vouches for
	FinalSize     int64     // size of the latest valid final checkpoint (0: never closed); save it as VerifyOptions.Finals
	Registered    time.Time // creation time in the log's registry entry (zero: none)
	Newest        time.Time // the latest record time read
	Problem       *Problem
}

// Report is the result of Verify: one LogReport per log, sorted by log ID,
// and what the state chain holds.
type Report struct {
	Logs  []LogReport
	State StateReport
}

// StateHead is a position in the state chain: how many entries it holds
// and the hash of the last one as stored (zero for an empty chain). Keep
// Report.State.StateHead, and pass it back as VerifyOptions.State next time.
type StateHead struct {
	Length int64
	Hash   StateHash
}

// StateReport is what Verify found in the state chain.
type StateReport struct {
	StateHead          // the entries read: each signed and linked to the one before
	Problem   *Problem // the first problem (Log ""), nil when none
}

// OK reports whether no log, and not the state chain, has a problem.
func (r *Report) OK() bool { return len(r.Problems()) == 0 }

// Problems returns the problem of the state chain, if any, then the first
// problem of each log that has one.
func (r *Report) Problems() []Problem {
	var ps []Problem
	if r.State.Problem != nil {
		ps = append(ps, *r.State.Problem)
	}
	for _, l := range r.Logs {
		if l.Problem != nil {
			ps = append(ps, *l.Problem)
		}
	}
	return ps
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Trusted holds the latest tree of each log that the caller verified
	// before (LogReport.Verified, kept e.g. in a state file). A log that is
	// now shorter, missing, or whose records hash differently at that size
	// was rolled back or forked, which stored checkpoints alone cannot show
	// when an attacker replaced the whole log with an older copy.
	Trusted map[string]tlog.Tree

	// Finals holds, per log, the size of a final checkpoint the caller saw
	// before (LogReport.FinalSize). The log must still hold a valid final
	// checkpoint of that size (ClassReopened otherwise).
	Finals map[string]int64

	// UnsignedGrace: a log with records but no valid checkpoint fails
	// (ClassUnsigned) when its newest record is older than this, and a
	// registered log with no record at all fails (ClassMissing) when its
	// registration is. Default DefaultUnsignedGrace.
	UnsignedGrace time.Duration

	// State is the state chain's head the caller verified before
	// (Report.State.StateHead). The chain must still hold that many
	// entries (ClassRollback), the last of them hashing to Hash
	// (ClassFork). Zero: no demand.
	State StateHead

	// Now is the clock UnsignedGrace is measured with. Default time.Now.
	Now func() time.Time
}

// withDefaults returns o with its zero fields set to their defaults.
func (o VerifyOptions) withDefaults() VerifyOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.UnsignedGrace <= 0 {
		o.UnsignedGrace = DefaultUnsignedGrace
	}
	return o
}

// Verify reads every log under "audit/" in st, checks every record and
// checkpoint with verifierKey (from GenerateKey), and reports per log; it
// also reads the state chain (audit/_state/, StateReader) and reports its
// head.
//
// Besides each log's own checkpoints, it holds every log to what anything
// signed says about it: its registry entry (the log existed), its latest
// lease (the log held at least the lease's frontier, and a released log
// was closed at that size), the witness records of the logs that Verify
// finds covered by a valid checkpoint (log-head: the log held at least
// that many records; state-head: the state chain held at least that many
// entries, the last one hashing as claimed), the "continues" record of a
// log that replaced it, and what the caller verified before
// (VerifyOptions.Trusted, Finals, State).
//
// It streams: memory stays bounded by the frontier of one log (O(log n)
// hashes) plus one record, plus what the claims need: one size per log
// named by a log-head witness record (the largest), and a cache of at most
// maxStateClaims state heads already checked. The state chain is read
// once, keeping only its position and last hash; a state-head claim
// costs at most one GET of the entry it names.
//
// When it finds any problem it returns the complete report and an error
// wrapping ErrTampered. Any other error (the store failing, an invalid
// verifier key) means the verification did not finish.
//
// A log being written may be verified while its writer runs; records after
// its last checkpoint count as LogReport.Unsealed, and their witness
// records are not believed until a checkpoint covers them.
func Verify(ctx context.Context, st store.Store, verifierKey string, opts VerifyOptions) (*Report, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	// The chain first: the witness records in the logs name heads of it
	// that were read before they were written.
	sc, err := readStateChain(ctx, st, known, opts.State)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: reading the state chain: %w", err)
	}
	logs, leased, strays, err := listLogs(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	// After the listing: a log's entry is written before its first record,
	// so every log listed is in this read of the registry.
	regs, badRegs, err := readRegistry(ctx, st, known)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: reading the log registry: %w", err)
	}
	seen := make(map[string]bool, len(logs))
	for _, l := range logs {
		seen[l] = true
	}
	add := func(l string) {
		if !seen[l] {
			seen[l] = true
			logs = append(logs, l)
		}
	}
	for l := range opts.Trusted {
		add(l)
	}
	for l := range regs {
		add(l)
	}
	for l := range badRegs {
		add(l)
	}
	for l := range strays {
		add(l)
	}
	leaseOnly := map[string]bool{}
	for l := range leased {
		if !seen[l] {
			leaseOnly[l] = true
		}
		add(l)
	}
	sort.Strings(logs)
	vr := &verifyRun{ctx: ctx, st: st, known: known, opts: &opts, regs: regs, badRegs: badRegs, sc: sc, heads: map[string]headClaim{}}
	rep := &Report{Logs: make([]LogReport, 0, len(logs))}
	for _, l := range logs {
		var lr LogReport
		if ValidLogID(l) {
			if lr, err = vr.verifyLog(l, true); err != nil {
				return rep, fmt.Errorf("audit: verify log %s: %w", l, err)
			}
		} else {
			lr = LogReport{Log: l, Problem: &Problem{Log: l, Seq: -1, Class: ClassCorrupt, Detail: "not a valid log ID"}}
		}
		if k, ok := strays[l]; ok && lr.Problem == nil {
			lr.Problem = &Problem{Log: l, Seq: -1, Key: k, Class: ClassCorrupt, Detail: "unexpected object"}
		}
		if leaseOnly[l] && lr.Problem == nil && lr.Records == 0 && lr.Checkpoints == 0 {
			// A lease taken by a writer that stopped before registering
			// the log: nothing was written, nothing is missing.
			continue
		}
		rep.Logs = append(rep.Logs, lr)
	}
	checkContinuations(rep)
	if err := vr.checkHeads(rep); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	rep.State = sc.report()
	if ps := rep.Problems(); len(ps) > 0 {
		return rep, fmt.Errorf("%w: %d of %d logs and the state chain; first: %v", ErrTampered, len(ps), len(rep.Logs), ps[0])
	}
	return rep, nil
}

// verifyRun is one run of Verify.
type verifyRun struct {
	ctx     context.Context
	st      store.Store
	known   note.Verifiers
	opts    *VerifyOptions
	regs    map[string]registration
	badRegs map[string]*Problem
	sc      *stateCheck
	heads   map[string]headClaim // log-head witness records, by the log they name: the largest size
}

// headClaim is the largest size a verified log-head witness record vouches
// for, and where it is.
type headClaim struct {
	size int64
	by   string // the log holding the witness record
	seq  int64
}

// verifyLog checks one log; with collect, the witness records it vouches
// for are gathered (a second look at a log, see checkHeads, does not).
func (vr *verifyRun) verifyLog(l string, collect bool) (LogReport, error) {
	ev, err := readLeaseEvidence(vr.ctx, vr.st, l, vr.known)
	if err != nil {
		return LogReport{Log: l}, err
	}
	lv := &logVerifier{ctx: vr.ctx, st: vr.st, known: vr.known, log: l, opts: vr.opts, finalN: -1, pastFinal: -1,
		wantFinal: vr.opts.Finals[l], badWitness: -1}
	if collect {
		lv.sc = vr.sc
		lv.pending, lv.heads = map[string]headClaim{}, map[string]headClaim{}
	}
	var pins []pin
	if t, ok := vr.opts.Trusted[l]; ok && t.N > 0 {
		pins = append(pins, pin{tree: t, short: ClassRollback, what: "a trusted checkpoint"})
	}
	if ev.valid && ev.l.f.n > 0 {
		pins = append(pins, pin{tree: ev.l.f.tree(), short: ClassTruncated, what: "its signed lease", key: ev.key})
		if ev.l.released {
			lv.leaseFinal = ev.l.f.n
		}
	}
	sort.SliceStable(pins, func(i, j int) bool { return pins[i].tree.N < pins[j].tree.N })
	lr, err := lv.run(pins)
	if err != nil {
		return lr, err
	}
	if p := lr.Problem; p != nil && p.Key == ev.key && ev.key != "" && lr.Records == 0 && lr.Checkpoints == 0 {
		// Nothing left of the log but its lease.
		p.Class, p.Seq = ClassMissing, -1
		p.Detail = fmt.Sprintf("log is gone; its signed lease vouches for %d records", ev.l.f.n)
	}
	if lr.Problem == nil && ev.bad != "" {
		lr.Problem = &Problem{Log: l, Seq: -1, Key: ev.key, Class: ClassCorrupt, Detail: ev.bad}
	}
	if err := vr.checkRegistry(&lr, ev); err != nil {
		return lr, err
	}
	if collect {
		for target, c := range lv.heads {
			if old, ok := vr.heads[target]; !ok || c.size > old.size {
				vr.heads[target] = c
			}
		}
	}
	return lr, nil
}

// checkRegistry adds what the registry says about one log to its report:
// a log that holds records must be registered, and a registered log must
// hold records unless it is being created: registered within
// UnsignedGrace, with no signed lease saying it was released or had
// records.
func (vr *verifyRun) checkRegistry(lr *LogReport, ev leaseEvidence) error {
	reg, ok := vr.regs[lr.Log]
	if !ok && lr.Records > 0 && vr.badRegs[lr.Log] == nil {
		// A log found through its lease may have been registered after
		// the registry was read: look again, now that its records were
		// read (the entry precedes the first one).
		msg, err := readSmall(vr.ctx, vr.st, registryKey(lr.Log), maxCheckpointLen)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			r, class, err := openRegistration(msg, vr.known)
			switch {
			case err != nil:
				vr.badRegs[lr.Log] = &Problem{Log: lr.Log, Seq: -1, Key: registryKey(lr.Log), Class: class, Detail: "registry entry: " + strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")}
			case r.log != lr.Log:
				vr.badRegs[lr.Log] = &Problem{Log: lr.Log, Seq: -1, Key: registryKey(lr.Log), Class: ClassCorrupt, Detail: "registry entry names another log"}
			default:
				reg, ok = r, true
				vr.regs[lr.Log] = r
			}
		}
	}
	if ok {
		lr.Registered = reg.time
	}
	if lr.Problem != nil {
		return nil
	}
	_, trusted := vr.opts.Trusted[lr.Log]
	switch {
	case vr.badRegs[lr.Log] != nil:
		lr.Problem = vr.badRegs[lr.Log]
	case !ok && lr.Records > 0:
		// Every appender registers a log before its first record: records
		// in a log nobody registered were either written by someone
		// without the key, or its entry was deleted (the first step of
		// erasing a log as a whole, where nothing locks the registry).
		lr.Problem = &Problem{Log: lr.Log, Seq: lr.Verified.N, Key: registryKey(lr.Log), Class: ClassUnregistered,
			Detail: fmt.Sprintf("no valid registry entry, %d records (%d covered by a checkpoint)", lr.Records, lr.Verified.N)}
	case ok && lr.Records == 0 && lr.Checkpoints == 0 && !trusted:
		if vr.opts.Now().Sub(reg.time) > vr.opts.UnsignedGrace || ev.valid && (ev.l.released || ev.l.f.n > 0) {
			lr.Problem = &Problem{Log: lr.Log, Seq: -1, Class: ClassMissing, Detail: "registered " + reg.time.Format(time.RFC3339) + " but holds no record"}
		}
	}
	return nil
}

// checkHeads holds each log named by a verified log-head witness record
// to the size it vouches for. A log found short, or missing, is looked at
// once more before it is reported: its writer may have gone on (or begun)
// after it was read, and the witness record was written since.
func (vr *verifyRun) checkHeads(rep *Report) error {
	idx := make(map[string]int, len(rep.Logs))
	for i, l := range rep.Logs {
		idx[l.Log] = i
	}
	targets := make([]string, 0, len(vr.heads))
	for t := range vr.heads {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	var missing []LogReport
	for _, target := range targets {
		c := vr.heads[target]
		i, ok := idx[target]
		if ok && (rep.Logs[i].Problem != nil || rep.Logs[i].Records >= c.size) {
			continue
		}
		again, err := vr.verifyLog(target, false)
		if err != nil {
			return fmt.Errorf("log %s: %w", target, err)
		}
		switch {
		case again.Problem == nil && again.Records >= c.size:
		case again.Problem != nil:
		case again.Records == 0 && again.Checkpoints == 0:
			again.Problem = &Problem{Log: target, Seq: -1, Class: ClassMissing,
				Detail: fmt.Sprintf("log is gone; a witness record in log %s at seq %d vouches for %d records", c.by, c.seq, c.size)}
		default:
			again.Problem = &Problem{Log: target, Seq: again.Records, Class: ClassTruncated,
				Detail: fmt.Sprintf("%d records; a witness record in log %s at seq %d vouches for %d", again.Records, c.by, c.seq, c.size)}
		}
		if ok {
			rep.Logs[i] = again
		} else {
			missing = append(missing, again)
		}
	}
	if len(missing) > 0 {
		rep.Logs = append(rep.Logs, missing...)
		sort.Slice(rep.Logs, func(i, j int) bool { return rep.Logs[i].Log < rep.Logs[j].Log })
	}
	return nil
}

// leaseEvidence is the latest lease of a log, as Verify reads it.
type leaseEvidence struct {
	l     lease
	key   string // "" when the log has no lease
	valid bool   // signed with the key, for this log
	bad   string // why a lease present is not valid
}

// readLeaseEvidence reads the latest lease generation of log. A
// generation deleted between the listing and the read (a renewal deletes
// the one before) is looked up again.
func readLeaseEvidence(ctx context.Context, st store.Store, log string, known note.Verifiers) (leaseEvidence, error) {
	dir := leaseDir(log)
	for attempt := 0; ; attempt++ {
		var key string
		for k, err := range st.List(ctx, dir) {
			if err != nil {
				return leaseEvidence{}, err
			}
			if _, ok := parseSeqName(k[len(dir):]); ok {
				key = k // lexical order is generation order
			}
		}
		if key == "" {
			return leaseEvidence{}, nil
		}
		b, err := readSmall(ctx, st, key, maxLeaseLen)
		if errors.Is(err, store.ErrNotFound) && attempt < 3 {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return leaseEvidence{}, nil
		}
		if err != nil {
			return leaseEvidence{}, err
		}
		l, err := openLease(b, known)
		switch {
		case err != nil:
			return leaseEvidence{key: key, bad: "lease " + strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")}, nil
		case l.log != log:
			return leaseEvidence{key: key, bad: "lease of another log"}, nil
		}
		return leaseEvidence{l: l, key: key, valid: true}, nil
	}
}

// listLogs returns the log IDs under audit/ in order, the logs that have a
// lease (whether or not any of their records remain), and objects directly
// under audit/ that belong to no log directory, by name.
func listLogs(ctx context.Context, st store.Store) ([]string, map[string]bool, map[string]string, error) {
	var logs []string
	leased := map[string]bool{}
	strays := map[string]string{}
	for key, err := range st.List(ctx, auditPrefix) {
		if err != nil {
			return nil, nil, nil, err
		}
		rest := key[len(auditPrefix):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			if _, ok := strays[rest]; !ok {
				strays[rest] = key
			}
			continue
		}
		if rest[0] == '_' {
			// The registry, the state chain and the leases, not a log.
			if l, ok := strings.CutPrefix(key, leasePrefix); ok {
				if j := strings.IndexByte(l, '/'); j > 0 && ValidLogID(l[:j]) {
					leased[l[:j]] = true
				}
			}
			continue
		}
		// All keys of one log share the prefix "audit/<log>/", so they are
		// adjacent in lexical order.
		if l := rest[:i]; len(logs) == 0 || logs[len(logs)-1] != l {
			logs = append(logs, l)
		}
	}
	return logs, leased, strays, nil
}

// checkContinuations checks each "continues" claim against the log it
// names: that log must exist and hold at least the records vouched for.
func checkContinuations(rep *Report) {
	idx := make(map[string]int, len(rep.Logs))
	for i, l := range rep.Logs {
		idx[l.Log] = i
	}
	var missing []LogReport
	for _, l := range rep.Logs {
		if l.Continues == "" {
			continue
		}
		i, ok := idx[l.Continues]
		if !ok {
			missing = append(missing, LogReport{Log: l.Continues, Problem: &Problem{
				Log: l.Continues, Seq: -1, Class: ClassMissing,
				Detail: fmt.Sprintf("log is missing; log %s continues it after %d records", l.Log, l.ContinuesSize)}})
			idx[l.Continues] = -1
			continue
		}
		if i < 0 {
			continue
		}
		p := &rep.Logs[i]
		if p.Problem == nil && p.Records < l.ContinuesSize {
			p.Problem = &Problem{Log: p.Log, Seq: p.Records, Class: ClassTruncated,
				Detail: fmt.Sprintf("%d records; log %s continues it after %d", p.Records, l.Log, l.ContinuesSize)}
		}
	}
	if len(missing) > 0 {
		rep.Logs = append(rep.Logs, missing...)
		sort.Slice(rep.Logs, func(i, j int) bool { return rep.Logs[i].Log < rep.Logs[j].Log })
	}
}

type refinement uint8

const (
	refineNone     refinement = iota
	refineGap                 // a gap that turns out to be a reordering if a lower seq follows
	refineMismatch            // a mismatch that turns out to be a fork if a later checkpoint matches
)

// logVerifier checks one log in one pass: batches in key order, merged with
// checkpoints (and a trusted tree) in size order.
type logVerifier struct {
	ctx   context.Context
	st    store.Store
	known note.Verifiers
	log   string
	opts  *VerifyOptions
	rep   LogReport

	// batch stream
	keys      func() (string, error, bool)
	stopKeys  func()
	lastKey   string
	br        *batchReader
	body      io.Closer
	brKey     string
	brName    int64 // the first seq in the batch's name
	brStart   int64 // position of the batch's first record
	exhausted bool
	stopped   bool // a corrupt object: no more records are read
	err       error

	f       frontier
	pos     int64
	rec     Record
	prevRaw []byte

	prob      *Problem
	refine    refinement
	gapSeq    int64
	finalN    int64 // size of the final checkpoint in force (-1: none, or reopened)
	pastFinal int64 // first record after finalN (-1: none)
	pfKey     string
	wantFinal int64 // a final checkpoint of this size must exist (0: no demand)
	sawWant   bool
	lastT     time.Time

	// leaseFinal: the log's latest lease is a signed release at this size,
	// so a final checkpoint of that size must exist (0: no demand).
	leaseFinal    int64
	sawLeaseFinal bool

	// Witness records: the log-head claims read since the last verified
	// checkpoint (pending) and those a verified checkpoint covers (heads),
	// by the log they name; the first malformed one; the first state-head
	// claim the state chain contradicts. Only records a valid checkpoint
	// covers count: the rest may be anybody's.
	sc           *stateCheck // nil: witness records are not collected
	pending      map[string]headClaim
	heads        map[string]headClaim
	badWitness   int64 // seq of the first malformed witness record (-1: none)
	stateFail    *Problem
	stateFailSeq int64 // the witness record that vouches for what stateFail contradicts
}

// pin is a tree the log must hold at its size, from outside its
// checkpoints: the caller's earlier run, or the log's latest lease.
type pin struct {
	tree  tlog.Tree
	short Class  // what a log shorter than the pin is
	what  string // what vouches for it, for the detail
	key   string // its storage key, if any
}

func (v *logVerifier) problem(seq int64, key string, c Class, format string, args ...any) {
	if v.prob == nil {
		v.prob = &Problem{Log: v.log, Seq: seq, Key: key, Class: c, Detail: fmt.Sprintf(format, args...)}
	}
}

func (v *logVerifier) run(pins []pin) (LogReport, error) {
	v.rep.Log = v.log
	v.openKeys()
	defer func() {
		v.stopKeys()
		if v.body != nil {
			v.body.Close()
		}
	}()
	cpPrefix := checkpointPrefix(v.log)
	for key, err := range v.st.List(v.ctx, cpPrefix) {
		if err != nil {
			return v.rep, err
		}
		name := key[len(cpPrefix):]
		final := strings.HasSuffix(name, "-final")
		reopen := strings.HasSuffix(name, "-reopen")
		n, ok := parseSeqName(strings.TrimSuffix(strings.TrimSuffix(name, "-final"), "-reopen"))
		if !ok {
			v.problem(-1, key, ClassCorrupt, "unexpected object among checkpoints")
			continue
		}
		for len(pins) > 0 && pins[0].tree.N < n {
			v.checkPin(pins[0])
			pins = pins[1:]
		}
		v.checkpoint(key, n, final, reopen)
		if v.err != nil {
			return v.rep, v.err
		}
	}
	for _, p := range pins {
		v.checkPin(p)
	}
	v.advance(math.MaxInt64)
	if v.err != nil {
		return v.rep, v.err
	}
	v.rep.Records = v.pos
	if v.pastFinal >= 0 {
		v.problem(v.pastFinal, v.pfKey, ClassPastFinal, "record after the final checkpoint at size %d", v.finalN)
	}
	if v.wantFinal > 0 && !v.sawWant && v.prob == nil {
		v.problem(-1, checkpointKey(v.log, v.wantFinal, true), ClassReopened, "the final checkpoint at size %d seen before is gone", v.wantFinal)
	}
	if v.leaseFinal > 0 && !v.sawLeaseFinal && v.prob == nil {
		v.problem(-1, checkpointKey(v.log, v.leaseFinal, true), ClassReopened, "its signed lease says it was closed at size %d, but no valid final checkpoint of that size is stored", v.leaseFinal)
	}
	if v.badWitness >= 0 && v.badWitness < v.rep.Verified.N {
		v.problem(v.badWitness, "", ClassWitness, "witness record does not parse")
	}
	if v.stateFail != nil && v.stateFailSeq < v.rep.Verified.N {
		v.sc.fail(v.stateFail)
	}
	if v.prob == nil && v.pos > 0 && v.rep.Verified.N == 0 && v.opts.Now().Sub(v.rep.Newest) > v.opts.UnsignedGrace {
		v.problem(0, "", ClassUnsigned, "%d records, none covered by a valid checkpoint, the newest from %s", v.pos, v.rep.Newest.Format(time.RFC3339))
	}
	if v.prob == nil {
		if v.finalN >= 0 {
			v.rep.Final = true
		} else {
			v.rep.Unsealed = v.pos - v.rep.Verified.N
		}
	}
	v.rep.Problem = v.prob
	return v.rep, nil
}

// verifiedTo records that the first t.N records are verified, and believes
// the witness records read so far (all of them are among those records).
func (v *logVerifier) verifiedTo(t tlog.Tree) {
	v.rep.Verified = t
	for target, c := range v.pending {
		if old, ok := v.heads[target]; !ok || c.size > old.size {
			v.heads[target] = c
		}
		delete(v.pending, target)
	}
}

// malformedWitness notes that the witness record at v.pos does not parse
// (only the first such record is reported).
func (v *logVerifier) malformedWitness() {
	if v.badWitness < 0 {
		v.badWitness = v.pos
	}
}

// witness reads one witness record at position v.pos.
func (v *logVerifier) witness(r *Record) {
	if v.sc == nil {
		return
	}
	switch r.Reason {
	case ReasonLogHead:
		target, n, err := ParseLogHead(r.Detail)
		if err != nil {
			v.malformedWitness()
			return
		}
		if c, ok := v.pending[target]; n > 0 && (!ok || n > c.size) {
			v.pending[target] = headClaim{size: n, by: v.log, seq: v.pos}
		}
	case ReasonStateHead:
		n, h, err := ParseStateHead(r.Detail)
		if err != nil {
			v.malformedWitness()
			return
		}
		if v.stateFail != nil {
			return // only the first contradiction counts (see run)
		}
		p, err := v.sc.vouch(StateHead{Length: n, Hash: h}, fmt.Sprintf("a witness record in log %s at seq %d", v.log, v.pos))
		if err != nil {
			v.err = err
			return
		}
		v.stateFail, v.stateFailSeq = p, v.pos
	}
	// Other reasons: a newer writer's; nothing to check.
}

func (v *logVerifier) openKeys() {
	next, stop := iter.Pull2(v.st.List(v.ctx, logPrefix(v.log)))
	v.keys, v.stopKeys, v.exhausted = next, stop, false
}

// relist picks up batches written since the listing began (a live log
// whose checkpoint is newer than our listing).
func (v *logVerifier) relist() {
	v.stopKeys()
	v.openKeys()
}

// nextBatch opens the next batch object; false at the end of the listing.
func (v *logVerifier) nextBatch() bool {
	prefix := logPrefix(v.log)
	for !v.exhausted {
		key, err, ok := v.keys()
		if !ok {
			v.exhausted = true
			return false
		}
		if err != nil {
			v.err = err
			return false
		}
		if key <= v.lastKey {
			continue // seen before a relist
		}
		v.lastKey = key
		name := key[len(prefix):]
		if strings.HasPrefix(name, "checkpoints/") {
			continue
		}
		first, ok := parseSeqName(name)
		if !ok {
			v.problem(-1, key, ClassCorrupt, "unexpected object in the log")
			v.stopped = true
			return false
		}
		rc, err := v.st.Get(v.ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue // gone since listed; the seq check sees the hole
		}
		if err != nil {
			v.err = err
			return false
		}
		br, err := newBatchReader(rc)
		if err != nil {
			rc.Close()
			v.readError(key, err)
			return false
		}
		v.br, v.body, v.brKey, v.brName, v.brStart = br, rc, key, first, v.pos
		return true
	}
	return false
}

func (v *logVerifier) readError(key string, err error) {
	var ioe *ioError
	if errors.As(err, &ioe) {
		v.err = ioe.err
		return
	}
	v.problem(v.pos, key, ClassCorrupt, "batch does not parse: %s", strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
	v.refine = refineNone
	v.stopped = true
}

// advance reads records until limit records were read or the log ends.
func (v *logVerifier) advance(limit int64) {
	for v.pos < limit && !v.stopped && v.err == nil {
		if v.br == nil && !v.nextBatch() {
			return
		}
		raw, err := v.br.next(&v.rec)
		if err == io.EOF {
			v.body.Close()
			v.br, v.body = nil, nil
			if v.prob == nil && v.brName != v.brStart {
				v.problem(-1, v.brKey, ClassCorrupt, "batch named %d holds records from position %d", v.brName, v.brStart)
			}
			continue
		}
		if err != nil {
			v.readError(v.brKey, err)
			return
		}
		v.record(raw)
	}
}

// record checks one record at position v.pos and adds it to the tree.
func (v *logVerifier) record(raw []byte) {
	r := &v.rec
	if r.Log != v.log {
		v.problem(v.pos, v.brKey, ClassCorrupt, "record names another log")
		v.stopped = true
		return
	}
	if r.Seq != v.pos {
		switch {
		case v.prob == nil && r.Seq > v.pos:
			v.problem(v.pos, v.brKey, ClassGap, "expected seq %d, found %d", v.pos, r.Seq)
			v.refine, v.gapSeq = refineGap, r.Seq
		case v.prob == nil:
			if v.sameAs(r.Seq, raw) {
				v.problem(v.pos, v.brKey, ClassDuplicate, "copy of seq %d", r.Seq)
			} else {
				v.problem(v.pos, v.brKey, ClassConflict, "second record with seq %d", r.Seq)
			}
		case v.refine == refineGap && r.Seq < v.gapSeq:
			v.prob.Class = ClassReordered
			v.prob.Detail += fmt.Sprintf("; seq %d follows later", r.Seq)
			v.refine = refineNone
		case v.refine == refineMismatch:
			v.refine = refineNone
		}
	}
	if v.finalN >= 0 && v.pos >= v.finalN && v.pastFinal < 0 {
		// Allowed only once a reopen checkpoint signs for it; decided at
		// the end.
		v.pastFinal, v.pfKey = v.pos, v.brKey
	}
	if r.Time.After(v.rep.Newest) {
		v.rep.Newest = r.Time
	}
	if r.Event == EventWitness {
		v.witness(r)
	}
	if v.pos == 0 && r.Event == EventOpen && r.Reason == "continues" {
		var size int64
		var log string
		if n, _ := fmt.Sscanf(r.Detail, "log %s size %d", &log, &size); n == 2 && ValidLogID(log) && size > 0 {
			v.rep.Continues, v.rep.ContinuesSize = log, size
		}
	}
	v.f.add(tlog.RecordHash(raw))
	v.pos++
	v.prevRaw = append(v.prevRaw[:0], raw...)
}

// sameAs reports whether the record at position seq (< v.pos) has exactly
// the bytes raw. The previous record is at hand; an older one is read
// again (this happens once per log, on its first problem).
func (v *logVerifier) sameAs(seq int64, raw []byte) bool {
	if seq == v.pos-1 {
		return bytes.Equal(v.prevRaw, raw)
	}
	want := bytes.Clone(raw)
	prefix := logPrefix(v.log)
	var best string
	var bestFirst int64
	for key, err := range v.st.List(v.ctx, prefix) {
		if err != nil {
			return false
		}
		first, ok := parseSeqName(key[len(prefix):])
		if !ok || first > seq {
			break
		}
		best, bestFirst = key, first
	}
	if best == "" {
		return false
	}
	rc, err := v.st.Get(v.ctx, best)
	if err != nil {
		return false
	}
	defer rc.Close()
	br, err := newBatchReader(rc)
	if err != nil {
		return false
	}
	var r Record
	for i := bestFirst; ; i++ {
		b, err := br.next(&r)
		if err != nil {
			return false
		}
		if i == seq {
			return bytes.Equal(b, want)
		}
	}
}

// checkpoint checks the checkpoint stored under key, named for size n.
func (v *logVerifier) checkpoint(key string, n int64, final, reopen bool) {
	v.rep.Checkpoints++
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if v.finalN >= 0 && n > v.finalN {
		v.problem(-1, key, ClassPastFinal, "checkpoint of size %d after the final one at %d without a reopen checkpoint", n, v.finalN)
		v.refine = refineNone
		return
	}
	if !v.reach(n) {
		if v.prob == nil {
			v.problem(v.pos, key, ClassTruncated, "%d records; a checkpoint covers %d", v.pos, n)
		}
		v.refine = refineNone
		return
	}
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	msg, err := v.readCheckpoint(key)
	if err != nil || msg == nil {
		return
	}
	c, class, err := openCheckpoint(msg, v.known)
	if err != nil {
		v.problem(-1, key, class, "%s", strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
		return
	}
	bad := true
	switch {
	case c.log != v.log:
		v.problem(-1, key, ClassCorrupt, "checkpoint of another log")
	case c.tree.N != n:
		v.problem(-1, key, ClassRollback, "checkpoint of size %d stored as size %d", c.tree.N, n)
	case c.final != final || c.reopen != reopen:
		v.problem(-1, key, ClassCorrupt, "final or reopen flag does not match the name")
	case c.reopen && v.finalN != n:
		v.problem(-1, key, ClassCorrupt, "reopen checkpoint without a final checkpoint of size %d", n)
	case c.time.Before(v.lastT):
		v.problem(-1, key, ClassRollback, "checkpoint of size %d is older than a smaller one", n)
	default:
		bad = false
	}
	if bad {
		return
	}
	if v.refine != refineMismatch {
		v.lastT = c.time
	}
	if v.f.root() != c.tree.Hash {
		if v.refine != refineMismatch {
			v.problem(v.rep.Verified.N, key, ClassMismatch,
				"records %d to %d do not hash to the root signed at size %d", v.rep.Verified.N, n-1, n)
			v.refine = refineMismatch
		}
		return
	}
	if v.refine == refineMismatch {
		// The records agree with this later checkpoint: the earlier one
		// signed a different history of the same log.
		v.prob.Class = ClassFork
		v.prob.Seq = -1
		v.prob.Detail = fmt.Sprintf("checkpoint disagrees with the records and with the later checkpoint at size %d", n)
		v.refine = refineNone
		return
	}
	v.verifiedTo(c.tree)
	switch {
	case c.final:
		v.finalN = n
		v.rep.FinalSize = n
		if n == v.wantFinal {
			v.sawWant = true
		}
		if n == v.leaseFinal {
			v.sawLeaseFinal = true
		}
	case c.reopen:
		// Signed permission to continue after the final checkpoint.
		v.finalN, v.pastFinal = -1, -1
	}
}

// reach reads records up to n, listing again once if the listing ran out
// (batches written after it began); it reports whether n were read.
func (v *logVerifier) reach(n int64) bool {
	v.advance(n)
	if v.pos < n && v.exhausted && !v.stopped && v.err == nil {
		v.relist()
		v.advance(n)
	}
	return v.pos >= n
}

func (v *logVerifier) readCheckpoint(key string) ([]byte, error) {
	rc, err := v.st.Get(v.ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		v.rep.Checkpoints--
		return nil, nil
	}
	if err != nil {
		v.err = err
		return nil, err
	}
	defer rc.Close()
	msg, err := io.ReadAll(io.LimitReader(rc, maxCheckpointLen+1))
	if err != nil {
		v.err = err
		return nil, err
	}
	return msg, nil
}

// checkPin compares the log with a tree it must hold (see pin).
func (v *logVerifier) checkPin(p pin) {
	t := p.tree
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if !v.reach(t.N) {
		if v.prob == nil {
			v.problem(v.pos, p.key, p.short, "%d records; %s vouches for %d", v.pos, p.what, t.N)
		}
		v.refine = refineNone
		return
	}
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if v.f.root() != t.Hash {
		if v.refine != refineMismatch {
			v.problem(-1, p.key, ClassFork, "records disagree with %s at size %d", p.what, t.N)
		}
		return
	}
	if v.refine == refineMismatch {
		v.prob.Class = ClassFork
		v.prob.Seq = -1
		v.prob.Detail = fmt.Sprintf("checkpoint disagrees with the records and with %s at size %d", p.what, t.N)
		v.refine = refineNone
		return
	}
	if t.N > v.rep.Verified.N {
		v.verifiedTo(t)
	}
}
