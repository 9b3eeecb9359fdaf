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
	// ClassTruncated: a signed checkpoint covers more records than the log
	// holds (deleted last records, truncated tail).
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
)

// Problem is the first thing wrong in one log.
type Problem struct {
	Log    string
	Seq    int64  // first record position concerned, or -1 when the problem is a checkpoint or object
	Key    string // storage key of the object concerned, if any
	Class  Class
	Detail string // what was expected and found: positions and sizes, never record contents
}

// String formats p for a human.
func (p Problem) String() string {
	s := "log " + p.Log + ": " + string(p.Class)
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
	Continues     string // the log this one replaces (see Appender), if its first record says so
	ContinuesSize int64  // how many records of Continues that record vouches for
	Problem       *Problem
}

// Report is the result of Verify: one LogReport per log, sorted by log ID.
type Report struct {
	Logs []LogReport
}

// OK reports whether no log has a problem.
func (r *Report) OK() bool { return len(r.Problems()) == 0 }

// Problems returns the first problem of each log that has one.
func (r *Report) Problems() []Problem {
	var ps []Problem
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
}

// Verify reads every log under "audit/" in st, checks every record and
// checkpoint with verifierKey (from GenerateKey), and reports per log. It
// streams: memory stays bounded by the frontier of one log (O(log n)
// hashes) plus one record, whatever the log size.
//
// When it finds any problem it returns the complete report and an error
// wrapping ErrTampered. Any other error (the store failing, an invalid
// verifier key) means the verification did not finish.
//
// A log being written may be verified while its writer runs; records after
// its last checkpoint count as LogReport.Unsealed.
func Verify(ctx context.Context, st store.Store, verifierKey string, opts VerifyOptions) (*Report, error) {
	vk, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, errors.New("audit: verifier key is not a valid note verifier key")
	}
	known := note.VerifierList(vk)
	logs, strays, err := listLogs(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	seen := make(map[string]bool, len(logs))
	for _, l := range logs {
		seen[l] = true
	}
	for l := range opts.Trusted {
		if !seen[l] {
			seen[l] = true
			logs = append(logs, l)
		}
	}
	for l := range strays {
		if !seen[l] {
			seen[l] = true
			logs = append(logs, l)
		}
	}
	sort.Strings(logs)
	rep := &Report{Logs: make([]LogReport, 0, len(logs))}
	for _, l := range logs {
		var lr LogReport
		if ValidLogID(l) {
			t, hasT := opts.Trusted[l]
			lv := &logVerifier{ctx: ctx, st: st, known: known, log: l, finalN: -1}
			if lr, err = lv.run(t, hasT); err != nil {
				return rep, fmt.Errorf("audit: verify log %s: %w", l, err)
			}
		} else {
			lr = LogReport{Log: l, Problem: &Problem{Log: l, Seq: -1, Class: ClassCorrupt, Detail: "not a valid log ID"}}
		}
		if k, ok := strays[l]; ok && lr.Problem == nil {
			lr.Problem = &Problem{Log: l, Seq: -1, Key: k, Class: ClassCorrupt, Detail: "unexpected object"}
		}
		rep.Logs = append(rep.Logs, lr)
	}
	checkContinuations(rep)
	if ps := rep.Problems(); len(ps) > 0 {
		return rep, fmt.Errorf("%w: %d of %d logs; first: %v", ErrTampered, len(ps), len(rep.Logs), ps[0])
	}
	return rep, nil
}

// listLogs returns the log IDs under audit/ in order, and objects directly
// under audit/ that belong to no log directory, by name.
func listLogs(ctx context.Context, st store.Store) ([]string, map[string]string, error) {
	var logs []string
	strays := map[string]string{}
	for key, err := range st.List(ctx, auditPrefix) {
		if err != nil {
			return nil, nil, err
		}
		rest := key[len(auditPrefix):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			if _, ok := strays[rest]; !ok {
				strays[rest] = key
			}
			continue
		}
		// All keys of one log share the prefix "audit/<log>/", so they are
		// adjacent in lexical order.
		if l := rest[:i]; len(logs) == 0 || logs[len(logs)-1] != l {
			logs = append(logs, l)
		}
	}
	return logs, strays, nil
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
				Log: l.Continues, Seq: -1, Class: ClassRollback,
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

	prob   *Problem
	refine refinement
	gapSeq int64
	finalN int64
	lastT  time.Time
}

func (v *logVerifier) problem(seq int64, key string, c Class, format string, args ...any) {
	if v.prob == nil {
		v.prob = &Problem{Log: v.log, Seq: seq, Key: key, Class: c, Detail: fmt.Sprintf(format, args...)}
	}
}

func (v *logVerifier) run(trusted tlog.Tree, hasTrusted bool) (LogReport, error) {
	v.rep.Log = v.log
	v.openKeys()
	defer func() {
		v.stopKeys()
		if v.body != nil {
			v.body.Close()
		}
	}()
	if trusted.N <= 0 {
		hasTrusted = false
	}
	cpPrefix := checkpointPrefix(v.log)
	for key, err := range v.st.List(v.ctx, cpPrefix) {
		if err != nil {
			return v.rep, err
		}
		name := key[len(cpPrefix):]
		final := strings.HasSuffix(name, "-final")
		n, ok := parseSeqName(strings.TrimSuffix(name, "-final"))
		if !ok {
			v.problem(-1, key, ClassCorrupt, "unexpected object among checkpoints")
			continue
		}
		if hasTrusted && trusted.N < n {
			v.checkTrusted(trusted)
			hasTrusted = false
		}
		v.checkpoint(key, n, final)
		if v.err != nil {
			return v.rep, v.err
		}
	}
	if hasTrusted {
		v.checkTrusted(trusted)
	}
	v.advance(math.MaxInt64)
	if v.err != nil {
		return v.rep, v.err
	}
	v.rep.Records = v.pos
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
	if v.finalN >= 0 && v.pos >= v.finalN {
		v.problem(v.pos, v.brKey, ClassPastFinal, "record after the final checkpoint at size %d", v.finalN)
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
func (v *logVerifier) checkpoint(key string, n int64, final bool) {
	v.rep.Checkpoints++
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if v.finalN >= 0 && n > v.finalN {
		v.problem(-1, key, ClassPastFinal, "checkpoint of size %d after the final one at %d", n, v.finalN)
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
	case c.final != final:
		v.problem(-1, key, ClassCorrupt, "final flag does not match the name")
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
	v.rep.Verified = c.tree
	if c.final {
		v.finalN = n
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

// checkTrusted compares the log with a tree the caller verified before.
func (v *logVerifier) checkTrusted(t tlog.Tree) {
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if !v.reach(t.N) {
		if v.prob == nil {
			v.problem(v.pos, "", ClassRollback, "%d records; a trusted checkpoint had %d", v.pos, t.N)
		}
		v.refine = refineNone
		return
	}
	if v.prob != nil && v.refine != refineMismatch {
		return
	}
	if v.f.root() != t.Hash {
		if v.refine != refineMismatch {
			v.problem(-1, "", ClassFork, "records disagree with the trusted checkpoint of size %d", t.N)
		}
		return
	}
	if v.refine == refineMismatch {
		v.prob.Class = ClassFork
		v.prob.Seq = -1
		v.prob.Detail = fmt.Sprintf("checkpoint disagrees with the records and with the trusted checkpoint of size %d", t.N)
		v.refine = refineNone
		return
	}
	if t.N > v.rep.Verified.N {
		v.rep.Verified = t
	}
}
