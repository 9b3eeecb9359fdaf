package vault

import (
	"context"
	"sync"
	"time"
)

// Limiter counts distinct events per key in a sliding window. The vault
// uses it for quotas and alerts. Implementations are safe for concurrent
// use; several Vault instances can share counts through one Limiter backed
// by shared storage (the in-process default counts per instance).
type Limiter interface {
	// Note records member (a document ID, a token ID) under key at now,
	// and returns how many distinct members key has in (now-window, now],
	// including this one. Noting a member again refreshes it; it does not
	// count twice.
	Note(ctx context.Context, key, member string, now time.Time, window time.Duration) (int, error)
}

// NewMemoryLimiter returns the in-process Limiter: exact sliding windows,
// memory proportional to the events inside each window.
func NewMemoryLimiter() Limiter { return &memLimiter{keys: map[string]*window{}} }

type memLimiter struct {
	mu   sync.Mutex
	keys map[string]*window
	ops  int
}

type window struct {
	seen map[string]time.Time // member → last noted
}

func (l *memLimiter) Note(_ context.Context, key, member string, now time.Time, win time.Duration) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil {
		w = &window{seen: map[string]time.Time{}}
		l.keys[key] = w
	}
	w.seen[member] = now
	cutoff := now.Add(-win)
	for m, t := range w.seen {
		if !t.After(cutoff) {
			delete(w.seen, m)
		}
	}
	n := len(w.seen)
	// Now and then drop keys whose windows have emptied.
	if l.ops++; l.ops%4096 == 0 {
		for k, w := range l.keys {
			if len(w.seen) == 0 {
				delete(l.keys, k)
			}
		}
	}
	return n, nil
}
