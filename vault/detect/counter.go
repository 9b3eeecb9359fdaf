package detect

import (
	"context"
	"sync"
	"time"
)

// Counter keeps event counts in fixed time slots. It is what makes the
// detector's counts exact under concurrency and, when shared, the same on
// every instance.
//
// Add counts one event under key in the slot that starts at slot and
// returns the slot's count including this event. Concurrent Adds of one
// key and slot return distinct numbers (each is a ticket), so of any
// number of parallel requests exactly one sees a given count: a threshold
// is crossed once, by one caller, however many arrive together. keep is
// how long the slot must stay readable after its start; an implementation
// may forget it afterwards.
//
// Get returns the count of a slot (0 when none was added or it was
// forgotten); keep is the value the slot's Adds passed. Implementations are safe for concurrent use; errors are
// returned as is (the caller fails closed).
type Counter interface {
	Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error)
	Get(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error)
}

// NewMemoryCounter returns an in-process Counter: one map lookup per call
// under a sharded lock, at most maxKeys key/slot counts (oldest slots are
// dropped first; 0 means 1<<18, about 40 MB), so random keys from a flood
// cannot grow it without bound. Counts are per process: use it for one
// instance, or for tests.
func NewMemoryCounter(maxKeys int) *MemoryCounter {
	if maxKeys <= 0 {
		maxKeys = 1 << 18
	}
	c := &MemoryCounter{}
	for i := range c.shards {
		c.shards[i] = memShard{m: map[slotKey]*memSlot{}, max: max(maxKeys/len(c.shards), 16)}
	}
	return c
}

// MemoryCounter is the Counter returned by NewMemoryCounter.
type MemoryCounter struct {
	shards [64]memShard
}

type slotKey struct {
	key  string
	slot int64
}

type memSlot struct{ n int64 }

type memShard struct {
	mu  sync.Mutex
	m   map[slotKey]*memSlot
	max int
	// ring of insertion order, for O(1) eviction of the oldest entry
	order []slotKey
	head  int
}

func (c *MemoryCounter) shard(k string) *memShard {
	return &c.shards[fnv(k)%uint32(len(c.shards))]
}

// fnv is FNV-1a: cheap, and good enough to spread keyed hashes.
func fnv(k string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return h
}

// Ranger is optionally implemented by a Counter that can read many slots
// of one key at once (a store listing, a Redis MGET): Range returns the
// counts of the slots from, from+width, …, to. The Detector uses it to
// fill its cache of closed slots in one call.
type Ranger interface {
	Range(ctx context.Context, key string, from, to time.Time, width, keep time.Duration) ([]int64, error)
}

// Add implements Counter.
func (c *MemoryCounter) Add(_ context.Context, key string, slot time.Time, _ time.Duration) (int64, error) {
	s := c.shard(key)
	k := slotKey{key, slot.UnixNano()}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e == nil {
		s.evict()
		e = &memSlot{}
		s.m[k] = e
		if len(s.order) < s.max {
			s.order = append(s.order, k)
		} else {
			s.order[s.head] = k
			s.head = (s.head + 1) % len(s.order)
		}
	}
	e.n++
	return e.n, nil
}

// evict makes room for one entry: when the shard is full, the entry at
// the ring's head (the oldest inserted) goes, expired or not, so memory
// stays bounded whatever keys arrive. Slots that old are long closed for
// every window the detector reads, unless a flood of new keys pushes them
// out: then a count restarts from zero, which the caller's alert markers
// and the shared Counter (not this one) are there to cover.
func (s *memShard) evict() {
	if len(s.order) < s.max {
		return
	}
	delete(s.m, s.order[s.head])
}

// Get implements Counter.
func (c *MemoryCounter) Get(_ context.Context, key string, slot time.Time, _ time.Duration) (int64, error) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[slotKey{key, slot.UnixNano()}]; e != nil {
		return e.n, nil
	}
	return 0, nil
}

// Len returns how many key/slot counts are held (for tests of the bound).
func (c *MemoryCounter) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Local reports that the counts are per process.
func (c *MemoryCounter) Local() bool { return true }
