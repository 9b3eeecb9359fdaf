package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"sort"
	"strconv"
	"strings"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// source is what query and stats read: the records of every log, verified
// first, merged by time.
type source struct {
	st         store.Store
	f          audit.Filter
	sizes      map[string]int64 // verified records per log
	logs       []string
	unverified bool
	from       cursor
}

// openSource verifies the store and returns the records to read. Problems
// are a warning: the records a valid checkpoint covers before each
// problem are still trustworthy.
func (c *cli) openSource(ctx context.Context, st store.Store, key string, f audit.Filter, unverified bool, from cursor, quiet bool) (*source, int) {
	rep, err := audit.Verify(ctx, st, key, audit.VerifyOptions{})
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		return nil, c.fail(fmt.Errorf("verifying the audit log: %w", err))
	}
	if ps := rep.Problems(); len(ps) > 0 && !quiet {
		fmt.Fprintf(c.stderr, "warning: verification found %d problems; only the records verified before each are shown as verified; first: %s\n", len(ps), ps[0])
	}
	src := &source{st: st, f: f, sizes: rep.VerifiedSizes(), unverified: unverified, from: from}
	for _, l := range rep.Logs {
		if l.Records > 0 && audit.ValidLogID(l.Log) && (f.Log == "" || f.Log == l.Log) {
			src.logs = append(src.logs, l.Log)
		}
	}
	return src, 0
}

// rec is a record and whether a valid checkpoint covers it.
type rec struct {
	audit.Record
	verified bool
}

// before orders records by time, then log, then sequence number.
func (a *rec) before(b *rec) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Log != b.Log {
		return a.Log < b.Log
	}
	return a.Seq < b.Seq
}

// reorderWindow is how many records a reader holds to put records in time
// order when a log goes back in time. A log is written in sequence order,
// and its records' times are almost in that order, but not quite: release
// records are folded into a log after the redemption they record (about
// 200 ms later; minutes later when another instance adopts them after a
// crash), and a record carries the time its caller took, not the time it
// was appended. Up to this many records (each at most 2.4 KiB of fields)
// are held; a record that arrives later than that, behind records already
// printed, is printed as soon as it is read and counted in reader.late.
var reorderWindow = 8192

// reader yields the records of every log in time order (ties: log, then
// seq). It merges the logs (one head record per log: each log comes in
// sequence order) and passes the merged stream through a reorder window of
// at most window records, so its memory is bounded by the number of logs
// plus the window, whatever the size of the logs.
type reader struct {
	s      *source
	window int

	heads  recHeap // one record per log, by time
	buf    recHeap // the reorder window, by time
	pulled map[string]int64
	last   rec
	out    bool // last holds the record printed last
	late   int  // records printed after a later one (their log went back in time beyond the window)
}

// reader returns a reader of s with the default window.
func (s *source) reader() *reader {
	return &reader{s: s, window: reorderWindow, pulled: map[string]int64{}}
}

// records yields the records; an error ends the sequence.
func (rd *reader) records(ctx context.Context) iter.Seq2[rec, error] {
	return func(yield func(rec, error) bool) {
		var stops []func()
		defer func() {
			for _, stop := range stops {
				stop()
			}
		}()
		s := rd.s
		// pull moves the next matching record of e's log into the heads.
		pull := func(e *heapEntry) error {
			for {
				r, err, ok := e.next()
				if !ok {
					return nil
				}
				if err != nil {
					return err
				}
				if r.Seq < s.from[r.Log] {
					continue
				}
				if r.Seq+1 > rd.pulled[r.Log] {
					rd.pulled[r.Log] = r.Seq + 1
				}
				e.rec = rec{Record: r, verified: r.Seq < s.sizes[r.Log]}
				heap.Push(&rd.heads, e)
				return nil
			}
		}
		for _, log := range s.logs {
			f := s.f
			f.Log = log
			if !s.unverified {
				f.Verified = s.sizes
			}
			next, stop := iter.Pull2(audit.Scan(ctx, s.st, f))
			stops = append(stops, stop)
			if err := pull(&heapEntry{next: next}); err != nil {
				yield(rec{}, err)
				return
			}
		}
		emit := func() bool {
			r := heap.Pop(&rd.buf).(*heapEntry).rec
			if rd.out && r.before(&rd.last) {
				rd.late++
			}
			rd.last, rd.out = r, true
			return yield(r, nil)
		}
		for rd.heads.Len() > 0 {
			e := heap.Pop(&rd.heads).(*heapEntry)
			heap.Push(&rd.buf, &heapEntry{rec: e.rec})
			if err := pull(e); err != nil {
				yield(rec{}, err)
				return
			}
			if rd.buf.Len() > rd.window && !emit() {
				return
			}
		}
		for rd.buf.Len() > 0 {
			if !emit() {
				return
			}
		}
	}
}

// stopAt returns where a reader that stopped early (--limit) stands: per
// log, the first sequence number not yet printed or filtered out. Records
// still held (in the window or as a log's head) are not printed yet; when
// a log went back in time, records of it printed after a held one are
// printed again by a run that resumes here: repeated, never lost.
func (rd *reader) stopAt(c cursor) {
	held := map[string]int64{}
	for _, h := range []recHeap{rd.heads, rd.buf} {
		for _, e := range h {
			if n, ok := held[e.rec.Log]; !ok || e.rec.Seq < n {
				held[e.rec.Log] = e.rec.Seq
			}
		}
	}
	for log, next := range rd.pulled {
		if n, ok := held[log]; ok {
			next = n
		}
		if next > c[log] {
			c[log] = next
		}
	}
}

type heapEntry struct {
	next func() (audit.Record, error, bool)
	rec  rec
}

type recHeap []*heapEntry

func (h recHeap) Len() int           { return len(h) }
func (h recHeap) Less(i, j int) bool { return h[i].rec.before(&h[j].rec) }
func (h recHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)        { *h = append(*h, x.(*heapEntry)) }
func (h *recHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// cursor is where a reader stopped: per log, the first sequence number not
// yet delivered. It is printed as
//
//	c1:<log>=<next seq>,<log>=<next seq>,...
//
// with logs in ascending order ("c1:" alone: from the start).
type cursor map[string]int64

const (
	cursorPrefix  = "c1:"
	maxCursorLen  = 1 << 20
	maxCursorLogs = 1 << 14
)

// errCursor marks an --after value that is not a cursor.
var errCursor = errors.New("invalid cursor")

// parseCursor parses a cursor strictly: what String prints, nothing else.
func parseCursor(s string) (cursor, error) {
	if len(s) > maxCursorLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errCursor, maxCursorLen)
	}
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want c1:<log>=<seq>,... as printed by an earlier run", errCursor)
	}
	c := cursor{}
	if rest == "" {
		return c, nil
	}
	prev := ""
	for i, part := range strings.Split(rest, ",") {
		if i >= maxCursorLogs {
			return nil, fmt.Errorf("%w: more than %d logs", errCursor, maxCursorLogs)
		}
		log, n, ok := strings.Cut(part, "=")
		seq, err := strconv.ParseInt(n, 10, 64)
		switch {
		case !ok || !audit.ValidLogID(log):
			return nil, fmt.Errorf("%w: entry %d is not <log>=<seq>", errCursor, i+1)
		case err != nil || seq < 1 || strconv.FormatInt(seq, 10) != n:
			return nil, fmt.Errorf("%w: entry %d: the sequence number must be a positive decimal", errCursor, i+1)
		case log <= prev:
			return nil, fmt.Errorf("%w: logs out of order or repeated", errCursor)
		}
		c[log], prev = seq, log
	}
	return c, nil
}

// String prints c canonically.
func (c cursor) String() string {
	logs := make([]string, 0, len(c))
	for l, n := range c {
		if n > 0 {
			logs = append(logs, l)
		}
	}
	sort.Strings(logs)
	var b strings.Builder
	b.WriteString(cursorPrefix)
	for i, l := range logs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l + "=" + strconv.FormatInt(c[l], 10))
	}
	return b.String()
}

// advance moves every log to its verified size: a pass that ran to the
// end has delivered (or filtered out) every verified record.
func (c cursor) advance(sizes map[string]int64) {
	for l, n := range sizes {
		if n > c[l] {
			c[l] = n
		}
	}
}

// readCursorFile reads the cursor an earlier run wrote to path. A missing
// file is the start of the logs; anything but a cursor is an error (a
// collector must not silently start over and send everything twice).
func readCursorFile(path string) (cursor, error) {
	b, err := readSmallFile(path, maxCursorLen+1) // a cursor and its newline
	if errors.Is(err, fs.ErrNotExist) {
		return cursor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cursor file %s: %w", path, err)
	}
	c, err := parseCursor(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return nil, fmt.Errorf("cursor file %s: %w", path, err)
	}
	return c, nil
}

// writeCursorFile replaces path with c atomically (writeFileAtomic, mode
// 0600), so that a crash leaves the old cursor or the new one, never a
// torn one.
func writeCursorFile(path string, c cursor) error {
	if err := writeFileAtomic(path, []byte(c.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the cursor file: %w", err)
	}
	return nil
}
