package memstore

// The manual clock the project's tests inject (Config.Now, the stores'
// Now): tests move it, never sleep for correctness. vaulttest exports it
// as vaulttest.Clock; packages that vaulttest imports (vault, vault/audit)
// use it from here.

import (
	"sync"
	"time"
)

// ClockStart is where a clock made by NewClock begins: a fixed instant, so
// runs are repeatable.
var ClockStart = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// Clock is a manual clock, safe for concurrent use. Its time moves only
// when Advance or Set is called.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at ClockStart.
func NewClock() *Clock { return &Clock{t: ClockStart} }

// ClockAt returns a Clock at t.
func ClockAt(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass the method value (c.Now) where a
// func() time.Time is asked for.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (backwards when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
