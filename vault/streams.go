package vault

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// streamCounter bounds each principal's concurrent redemptions. Entries
// exist only while a principal has one in progress, so memory grows with
// open streams, never with the number of principals seen.
type streamCounter struct {
	mu sync.Mutex
	m  map[string]*slots
}

type slots struct {
	n    int
	free chan struct{} // closed (and replaced) when a slot is given back
}

// acquire takes one of principal's max slots, waiting for one while ctx
// lasts (ErrQuotaExceeded when it ends first). The returned func gives the
// slot back; calling it more than once is safe.
func (s *streamCounter) acquire(ctx context.Context, principal string, max int) (func(), error) {
	for {
		s.mu.Lock()
		if s.m == nil {
			s.m = map[string]*slots{}
		}
		sl := s.m[principal]
		if sl == nil {
			sl = &slots{free: make(chan struct{})}
			s.m[principal] = sl
		}
		if sl.n < max {
			sl.n++
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { s.release(principal) }) }, nil
		}
		free := sl.free
		s.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return nil, fmt.Errorf("vault: redeem: %d concurrent redemptions in progress: %w: %w", max, ErrQuotaExceeded, ctx.Err())
		}
	}
}

func (s *streamCounter) release(principal string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.m[principal]
	sl.n--
	close(sl.free)
	sl.free = make(chan struct{})
	if sl.n == 0 {
		delete(s.m, principal)
	}
}

// latencyWindow keeps the durations of the most recent redemptions that
// went as far as the spend (served or refused: the slowest path a refusal
// can take), so the refusal floor follows the store's real latency.
type latencyWindow struct {
	mu   sync.Mutex
	ring [256]time.Duration
	n    int // filled slots
	next int
	// cached quantile, recomputed every 16 observations
	q     time.Duration
	dirty int
}

func (w *latencyWindow) observe(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring[w.next] = d
	w.next = (w.next + 1) % len(w.ring)
	w.n = min(w.n+1, len(w.ring))
	w.dirty++
	if w.dirty >= 16 || w.n < 16 {
		w.dirty = 0
		s := slices.Clone(w.ring[:w.n])
		slices.Sort(s)
		// The slowest of the last 256, plus a tenth: a deep path outlasts
		// the floor only when it is slower than every recent one.
		w.q = s[len(s)-1] + s[len(s)-1]/10
	}
}

// quantile is the maximum of the recent window plus 10 % (0 when empty).
func (w *latencyWindow) quantile() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.q
}

// RefusalFloor is the least time every refusal should take now for its
// timing to say nothing about its kind: 110 % of the longest time the
// slowest refusal path (up to and including the spend write and the
// refusal record) took over the last 256 such requests, at least least,
// at most MaxRefusalFloor.
// Handler applies it; callers that build their own transport over Redeem
// should too (start the clock before calling Redeem).
func (v *Vault) RefusalFloor(least time.Duration) time.Duration {
	f := v.lat.quantile() + time.Millisecond
	return min(max(least, f), max(least, MaxRefusalFloor))
}
