package vault

import (
	"sync"
	"time"
)

// pacer spaces events to a steady rate with a small burst (the generic
// cell rate algorithm): O(1) time and constant memory whatever the load.
type pacer struct {
	mu    sync.Mutex
	burst int       // how many events may go at once
	tat   time.Time // theoretical arrival time of the next event
}

// reserve returns when an event arriving at now may go ahead, the events
// being spaced by interval, and true. When that is after deadline, nothing
// is reserved and it returns deadline and false: a waiter that would give
// up takes no slot from the ones behind it.
func (p *pacer) reserve(now, deadline time.Time, interval time.Duration) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tat := p.tat
	if tat.Before(now) {
		tat = now
	}
	at := tat.Add(-time.Duration(max(p.burst-1, 0)) * interval)
	if at.Before(now) {
		at = now
	}
	if at.After(deadline) {
		return deadline, false
	}
	p.tat = tat.Add(interval)
	return at, true
}

// cancel gives back one reservation that turned out not to be needed (a
// served request): the next event may take its place. Turns already
// handed out stay as they are, and no credit beyond the burst appears:
// only a queue that reaches past now shrinks.
func (p *pacer) cancel(now time.Time, interval time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tat.After(now) {
		p.tat = p.tat.Add(-min(interval, p.tat.Sub(now)))
	}
}
