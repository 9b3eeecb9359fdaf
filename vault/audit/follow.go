package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/store"
)

// Follower reads the records of every log of a store as they are written:
// the vault's own view of what every instance has recorded, from which it
// decides what must not be rolled back (tokens already spent, documents
// viewed, the state chain's length). It reads batches by their exact names,
// so following an idle log costs one small GET that finds nothing.
//
// A Follower does not verify checkpoints (Verify does): it reads records as
// they land, also those of an unsealed tail. What it has read it never
// forgets, so whatever is deleted or rolled back in the store afterwards,
// the process that read it still knows it. It is not safe for concurrent
// use.
type Follower struct {
	st    store.Store
	known note.Verifiers
	logs  map[string]*followed
	order []string // logs in the order found
	taken func(log string, pos int64) int64
}

// SetTaken tells the Follower which batches it need not read: taken(log,
// pos) returns the number of records of the batch of log that starts at
// pos when the caller already has them (its own appender wrote them; see
// AppenderOptions.OnBatch), and 0 otherwise. The Follower then moves past
// that batch without reading it. Call it before Start.
func (f *Follower) SetTaken(taken func(log string, pos int64) int64) { f.taken = taken }

type followed struct {
	next int64 // the next record position to read
}

// ErrLogGap: a log's next batch is missing while later batches exist (a
// batch deleted, or hidden behind a delete marker), or a batch does not
// continue the log where the previous one ended. The records past the gap
// cannot be read in order.
var ErrLogGap = errors.New("audit: log has a gap")

// GapError is the ErrLogGap of one log: its batch at At cannot be read in
// order.
type GapError struct {
	Log    string
	At     int64
	Detail string
}

func (e *GapError) Error() string {
	return fmt.Sprintf("%v: log %s at %d: %s", ErrLogGap, e.Log, e.At, e.Detail)
}

func (e *GapError) Unwrap() error { return ErrLogGap }

// NewFollower returns a Follower of the logs in st registered under the
// audit key verifierKey.
func NewFollower(st store.Store, verifierKey string) (*Follower, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	return &Follower{st: st, known: known, logs: map[string]*followed{}}, nil
}

// Logs returns the logs followed and how many records of each were read.
func (f *Follower) Logs() map[string]int64 {
	m := make(map[string]int64, len(f.logs))
	for l, s := range f.logs {
		m[l] = s.next
	}
	return m
}

// window is how many sequence numbers share one listing prefix: batch names
// are 20-digit first sequence numbers, and a batch holds at most
// maxBatchRecords records, so listing the names that share all but the last
// digits of a number finds the batches around it.
const (
	windowDigits = 4
	windowSize   = 10000 // 10^windowDigits, more than maxBatchRecords
)

func windowPrefix(log string, w int64) string {
	return batchKey(log, w*windowSize)[:len(logPrefix(log))+20-windowDigits]
}

// batchesIn lists the first sequence numbers of the batches in window w.
func (f *Follower) batchesIn(ctx context.Context, log string, w int64) ([]int64, error) {
	var firsts []int64
	prefix := logPrefix(log)
	for k, err := range f.st.List(ctx, windowPrefix(log, w)) {
		if err != nil {
			return nil, err
		}
		if n, ok := parseSeqName(k[len(prefix):]); ok {
			firsts = append(firsts, n)
		}
	}
	return firsts, nil
}

// Start finds the logs registered now and, for each, reads and passes to fn
// its records from the first batch that may hold a record at or after
// since, and at least back to back before its last record (so an idle
// log's last moments are read however old they are), to its end. Records
// before that point are skipped, not read. A log registered later is read
// from its start by Poll. fn's error stops Start and is returned.
func (f *Follower) Start(ctx context.Context, since time.Time, back time.Duration, fn func(Record) error) error {
	logs, err := f.registered(ctx)
	if err != nil {
		return err
	}
	for _, log := range logs {
		if _, ok := f.logs[log]; ok {
			continue
		}
		first, err := f.findStart(ctx, log, since, back)
		if err != nil {
			return fmt.Errorf("audit: follow %s: %w", log, err)
		}
		f.add(log, first)
		if err := f.read(ctx, log, fn); err != nil {
			return err
		}
	}
	return nil
}

func (f *Follower) add(log string, next int64) {
	f.logs[log] = &followed{next: next}
	f.order = append(f.order, log)
}

// Poll reads what was appended to every followed log since the last call,
// and with discover also looks for logs registered since (read from their
// first record). It passes each record to fn in log order; the logs are
// taken one after another. An error wrapping ErrLogGap names a log that
// cannot be read on; the others are still read.
func (f *Follower) Poll(ctx context.Context, discover bool, fn func(Record) error) error {
	if discover {
		logs, err := f.registered(ctx)
		if err != nil {
			return err
		}
		for _, log := range logs {
			if _, ok := f.logs[log]; !ok {
				f.add(log, 0)
			}
		}
	}
	var errs []error
	for _, log := range f.order {
		if err := f.read(ctx, log, fn); err != nil {
			if !errors.Is(err, ErrLogGap) {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CheckGaps lists, for every followed log, the batches after its read
// position: one there while the batch at the position is absent is a gap
// (ErrLogGap). Poll alone cannot tell a gap from the end of a log.
func (f *Follower) CheckGaps(ctx context.Context) error {
	var errs []error
	for _, log := range f.order {
		s := f.logs[log]
		w := s.next / windowSize
		for _, ww := range []int64{w, w + 1} {
			firsts, err := f.batchesIn(ctx, log, ww)
			if err != nil {
				return err
			}
			if slices.Contains(firsts, s.next) {
				break // written since the last read: not a gap
			}
			if i := slices.IndexFunc(firsts, func(n int64) bool { return n > s.next }); i >= 0 {
				errs = append(errs, &GapError{Log: log, At: s.next, Detail: fmt.Sprintf("missing while the batch at %d is present", firsts[i])})
				break
			}
		}
	}
	return errors.Join(errs...)
}

// read reads the batches of log from its position on, by name, until the
// first absent one.
func (f *Follower) read(ctx context.Context, log string, fn func(Record) error) error {
	s := f.logs[log]
	for {
		if f.taken != nil {
			if n := f.taken(log, s.next); n > 0 {
				s.next += n
				continue
			}
		}
		rc, err := f.st.Get(ctx, batchKey(log, s.next))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := readBatchFrom(rc, log, s.next, fn)
		rc.Close()
		s.next += n
		if err != nil {
			return err
		}
	}
}

// readBatchFrom passes the records of one batch, which must continue log
// at position first, to fn; it returns how many it passed.
func readBatchFrom(r io.Reader, log string, first int64, fn func(Record) error) (int64, error) {
	br, err := newBatchReader(r)
	if err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return 0, ioe.err
		}
		return 0, &GapError{Log: log, At: first, Detail: err.Error()}
	}
	var n int64
	for {
		var rec Record
		_, err := br.next(&rec)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			var ioe *ioError
			if errors.As(err, &ioe) {
				return n, ioe.err
			}
			return n, &GapError{Log: log, At: first, Detail: err.Error()}
		}
		if rec.Log != log || rec.Seq != first+n {
			return n, &GapError{Log: log, At: first + n, Detail: fmt.Sprintf("record names %s/%d", rec.Log, rec.Seq)}
		}
		if err := fn(rec); err != nil {
			return n, err
		}
		n++
	}
}

// registered lists the logs with a registry entry signed by the audit key.
func (f *Follower) registered(ctx context.Context) ([]string, error) {
	var logs []string
	for key, err := range f.st.List(ctx, registryPrefix) {
		if err != nil {
			return nil, err
		}
		log := key[len(registryPrefix):]
		if !ValidLogID(log) {
			continue
		}
		msg, err := readSmall(ctx, f.st, key, maxCheckpointLen)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r, _, err := openRegistration(msg, f.known); err != nil || r.log != log {
			continue
		}
		logs = append(logs, log)
	}
	return logs, nil
}

// findStart returns the first sequence number of the batch from which log
// must be read: the latest batch whose first record is before both since
// and back before the log's last record, or 0.
func (f *Follower) findStart(ctx context.Context, log string, since time.Time, back time.Duration) (int64, error) {
	last, err := f.lastWindow(ctx, log)
	if err != nil || last < 0 {
		return 0, err
	}
	firsts, err := f.batchesIn(ctx, log, last)
	if err != nil || len(firsts) == 0 {
		return 0, err
	}
	lastT, err := f.lastTime(ctx, log, firsts[len(firsts)-1])
	if err != nil {
		return 0, err
	}
	target := since
	if t := lastT.Add(-back); t.Before(target) {
		target = t
	}
	// Binary search over windows for the last one whose first batch
	// starts before target (records are appended in time order; a clock
	// that went back only makes the search start earlier or later by a
	// window, and everything from there on is read).
	lo, hi := int64(0), last // invariant: the answer is in [lo, hi]
	firstOf := func(w int64) (int64, time.Time, bool, error) {
		fs, err := f.batchesIn(ctx, log, w)
		if err != nil || len(fs) == 0 {
			return 0, time.Time{}, false, err
		}
		t, err := f.firstTime(ctx, log, fs[0])
		return fs[0], t, err == nil, err
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		_, t, ok, err := firstOf(mid)
		if err != nil {
			return 0, err
		}
		if ok && t.Before(target) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	fs, err := f.batchesIn(ctx, log, lo)
	if err != nil {
		return 0, err
	}
	// The last batch of the window whose first record is before target
	// (binary search again: a window may hold thousands of batches).
	i, j := 0, len(fs) // fs[:i] start before target; fs[j:] do not
	for i < j {
		mid := (i + j) / 2
		t, err := f.firstTime(ctx, log, fs[mid])
		if err != nil {
			return 0, err
		}
		if t.Before(target) {
			i = mid + 1
		} else {
			j = mid
		}
	}
	start := int64(0)
	if i > 0 {
		start = fs[i-1]
	} else if lo > 0 {
		start = fs[0] // the previous window's first batch started before target
	}
	return start, nil
}

// lastWindow returns the last window of log holding a batch (-1: none),
// with O(log n) listings: windows are contiguous from 0.
func (f *Follower) lastWindow(ctx context.Context, log string) (int64, error) {
	has := func(w int64) (bool, error) {
		fs, err := f.batchesIn(ctx, log, w)
		return len(fs) > 0, err
	}
	ok, err := has(0)
	if err != nil || !ok {
		return -1, err
	}
	lo, hi := int64(0), int64(1)
	for {
		ok, err := has(hi)
		if err != nil {
			return -1, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 { // has(lo), !has(hi)
		mid := (lo + hi) / 2
		ok, err := has(mid)
		if err != nil {
			return -1, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

func (f *Follower) firstTime(ctx context.Context, log string, first int64) (time.Time, error) {
	var t time.Time
	err := f.batchRecords(ctx, log, first, func(r Record) bool { t = r.Time; return false })
	return t, err
}

func (f *Follower) lastTime(ctx context.Context, log string, first int64) (time.Time, error) {
	var t time.Time
	err := f.batchRecords(ctx, log, first, func(r Record) bool { t = r.Time; return true })
	return t, err
}

func (f *Follower) batchRecords(ctx context.Context, log string, first int64, fn func(Record) bool) error {
	rc, err := f.st.Get(ctx, batchKey(log, first))
	if err != nil {
		return err
	}
	defer rc.Close()
	errStop := errors.New("stop")
	_, err = readBatchFrom(rc, log, first, func(r Record) error {
		if !fn(r) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}
