package audit

import (
	"context"
	"errors"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// Filter selects records for Scan. Zero fields match everything.
type Filter struct {
	Since, Until time.Time // Since <= Time < Until
	Principal    string    // exact match
	Object       string    // exact match
	Event        Event
	Outcome      Outcome
	Log          string // one log only

	// Verified, when not nil, limits the records to the first
	// Verified[log] of each log: those a Verify run found covered by a
	// valid checkpoint (Report.VerifiedSizes). Logs absent from the map
	// yield nothing. Nil: every record, verified or not.
	Verified map[string]int64
}

func (f *Filter) match(r *Record) bool {
	if f.Verified != nil && r.Seq >= f.Verified[r.Log] {
		return false
	}
	return (f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until)) &&
		(f.Principal == "" || r.Principal == f.Principal) &&
		(f.Object == "" || r.Object == f.Object) &&
		(f.Event == "" || r.Event == f.Event) &&
		(f.Outcome == "" || r.Outcome == f.Outcome)
}

// Scan yields the records that match f, in (log, seq) order across logs,
// reading lazily: one batch object at a time. It answers "who looked at
// what, when, why"; it does not check signatures or hashes itself: run
// Verify and pass its Report.VerifiedSizes as f.Verified to get only
// records a signed checkpoint vouches for. An error (the store failing, an object that does not
// parse: ErrCorrupt) is yielded once and ends the sequence.
func Scan(ctx context.Context, st store.Store, f Filter) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		prefix := auditPrefix
		if f.Log != "" {
			if !ValidLogID(f.Log) {
				yield(Record{}, errors.New("audit: scan: invalid log ID in filter"))
				return
			}
			prefix = logPrefix(f.Log)
		}
		for key, err := range st.List(ctx, prefix) {
			if err != nil {
				yield(Record{}, err)
				return
			}
			rest := key[len(auditPrefix):]
			i := strings.IndexByte(rest, '/')
			if i <= 0 || rest[0] == '_' {
				continue // not a log: the registry, the leases, a stray
			}
			first, ok := parseSeqName(rest[i+1:])
			if !ok {
				continue // checkpoints and anything else
			}
			if f.Verified != nil && first >= f.Verified[rest[:i]] {
				continue // no verified record in this batch
			}
			if !scanBatch(ctx, st, key, &f, yield) {
				return
			}
		}
	}
}

// scanBatch yields the matching records of one batch; false means stop.
func scanBatch(ctx context.Context, st store.Store, key string, f *Filter, yield func(Record, error) bool) bool {
	rc, err := st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return true
	}
	if err != nil {
		yield(Record{}, err)
		return false
	}
	defer rc.Close()
	br, err := newBatchReader(rc)
	if err != nil {
		yield(Record{}, err)
		return false
	}
	for {
		var r Record
		_, err := br.next(&r)
		if err == io.EOF {
			return true
		}
		if err != nil {
			yield(Record{}, err)
			return false
		}
		if f.match(&r) && !yield(r, nil) {
			return false
		}
	}
}
