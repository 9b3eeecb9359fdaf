package detect

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// ErrCountsLost is what a Counter that can lose its counts (Redis: a
// restart without persistence, FLUSHALL, eviction) returns, wrapped, from
// every call once it lost them, until Restore refilled them. Counts lost
// are not a fresh quota: the caller refuses (fails closed) and restores.
var ErrCountsLost = errors.New("detect: counts lost")

// SlotCount is one count of a Counter: key, slot and keep as in Add.
type SlotCount struct {
	Key  string
	Slot time.Time
	Keep time.Duration
	N    int64
}

// Restorer is implemented by a Counter that can lose its counts. Restore
// calls recount, which recounts every count still within its keep time
// from a durable record (the vault reads its audit log), writes each back
// as at least the recounted value, and only then accepts Adds again. Of
// several callers (instances) one recounts; the others wait for it, within
// ctx. Restore returns nil when the counts are whole (also when another
// caller restored them).
type Restorer interface {
	Counter
	Restore(ctx context.Context, recount func(ctx context.Context) ([]SlotCount, error)) error
}

// Tally recounts events into the slot counts a Detector adds for them,
// without thresholds or alerts: what a Restorer is refilled with. It holds
// at most max counts (events that would add another are dropped, so the
// recount errs low only past that bound). Not safe for concurrent use.
type Tally struct {
	m   map[slotKey]*SlotCount
	max int
}

// NewTally returns an empty Tally holding at most max counts (0: 1<<20).
func NewTally(max int) *Tally {
	if max <= 0 {
		max = 1 << 20
	}
	return &Tally{m: map[slotKey]*SlotCount{}, max: max}
}

func (t *Tally) add(key string, at time.Time, width time.Duration) {
	slot := slotOf(at, width)
	k := slotKey{key, slot.UnixNano()}
	c := t.m[k]
	if c == nil {
		if len(t.m) >= t.max {
			return
		}
		c = &SlotCount{Key: key, Slot: slot, Keep: keepOf(width)}
		t.m[k] = c
	}
	c.N++
}

// Add counts e as Detector.Observe would (vault-wide counts all in the
// first shard: the Detector reads their sum). Refusals are counted past
// the thresholds at which Observe stops counting them, so a recount errs
// high there, never low.
func (t *Tally) Add(e Event) {
	p := "p/" + e.Principal
	switch e.Kind {
	case View:
		if e.Principal != "" {
			t.add(p+"/v1m", e.Time, minute)
			t.add(p+"/v1h", e.Time, hour)
			t.add(p+"/v1d", e.Time, day)
		}
		t.add("vault/v1m/0", e.Time, minute)
	case Redeem:
		if e.Principal != "" {
			t.add(p+"/r1m", e.Time, minute)
		}
	case Decision:
		t.add("vault/d1m/0", e.Time, minute)
		if e.Principal != "" {
			t.add(p+"/d1m", e.Time, minute)
			if e.HandedOn {
				t.add(p+"/h1m", e.Time, minute)
			} else {
				t.add(p+"/x1m", e.Time, minute)
			}
		}
	case Refusal:
		for _, who := range []struct{ key, id string }{{p, e.Principal}, {"a/" + e.Addr, e.Addr}} {
			if who.id != "" {
				t.add(who.key+"/f1m", e.Time, minute)
				t.add(who.key+"/f1h", e.Time, hour)
			}
		}
	}
}

// Counts returns the counts whose slot is still kept at now.
func (t *Tally) Counts(now time.Time) []SlotCount {
	out := make([]SlotCount, 0, len(t.m))
	for _, c := range t.m {
		if c.Slot.Add(c.Keep).After(now) {
			out = append(out, *c)
		}
	}
	return out
}

// RecountSince is how far back a recount must read events: the longest a
// Detector keeps a slot.
const RecountSince = 9 * day

// String names a count for logs and tests.
func (c SlotCount) String() string {
	return c.Key + "@" + strconv.FormatInt(c.Slot.Unix(), 10) + "=" + strconv.FormatInt(c.N, 10)
}
