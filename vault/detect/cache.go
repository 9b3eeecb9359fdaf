package detect

import (
	"sync"
	"time"
)

// slotCache is a bounded map of (key, slot) → count: when full, the
// oldest insertion goes (a ring), so every operation is O(1) and memory
// stays fixed whatever keys arrive.
type slotCache struct {
	mu    sync.Mutex
	m     map[slotKey]int64
	order []slotKey
	head  int
	max   int
}

func newSlotCache(max int) *slotCache {
	return &slotCache{m: make(map[slotKey]int64), max: max}
}

func (c *slotCache) get(key string, slot time.Time) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[slotKey{key, slot.UnixNano()}]
	return n, ok
}

func (c *slotCache) has(key string, slot time.Time) bool {
	_, ok := c.get(key, slot)
	return ok
}

func (c *slotCache) put(key string, slot time.Time, n int64) {
	k := slotKey{key, slot.UnixNano()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		c.m[k] = n
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, k)
	} else {
		delete(c.m, c.order[c.head])
		c.order[c.head] = k
		c.head = (c.head + 1) % c.max
	}
	c.m[k] = n
}
