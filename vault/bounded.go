package vault

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// Deadlines.
//
// Every call of the Vault returns by its context's deadline plus
// DeadlineMargin, whatever its dependencies do: a store, a KMS or an audit
// store that is killed, hangs (SIGSTOP) or fails mid-call. Each dependency
// call is made with the caller's context, so it ends with it. What must
// outlive the call runs bounded in the background and never blocks it:
//
//   - the record of the call's own failure (a refusal of Put, Grant,
//     Redeem or Delete, an alert, Rewrap's failure): written in the
//     background, detached from the caller's context and bounded by
//     lateTimeout; the caller waits for it while its context lasts and
//     AuditMargin more, so that a refusal caused by a KMS or store that
//     hung until the deadline is still recorded ("kek-unavailable"), then
//     returns, the record still on its way;
//   - the removal of what a failed call wrote (a failed Put's objects, a
//     shred's claim, a quarantine mark): in the background only, bounded
//     by lateTimeout (PutCleanupTimeout for Put); what it cannot remove,
//     Sweep collects.
//
// Close waits for this background work, but only up to its own context.
const (
	// DeadlineMargin bounds how late any call returns after its
	// context's deadline: AuditMargin for the record of its own failure,
	// and the rest for scheduling on a loaded machine.
	DeadlineMargin = 500 * time.Millisecond
	// AuditMargin is how long a call may go on after its context ended to
	// make the record of its own failure durable (see DeadlineMargin).
	AuditMargin = 250 * time.Millisecond

	// lateTimeout bounds background work that outlives its call.
	lateTimeout = 30 * time.Second
	// maxLate bounds the failure records in the background at once
	// (a flood of refusals while the audit store hangs); past it, a record
	// gets AuditMargin after the deadline, in the caller.
	maxLate = 256
)

// tasks tracks background work (sync.WaitGroup, with a Wait that ends with
// a context and an Add that may race with it).
type tasks struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

// Go runs f in the background.
func (t *tasks) Go(f func()) {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
	go func() {
		defer func() {
			t.mu.Lock()
			t.n--
			if t.n == 0 {
				close(t.idle)
			}
			t.mu.Unlock()
		}()
		f()
	}()
}

// Wait waits until no task runs, or ctx ends; it reports which.
func (t *tasks) Wait(ctx context.Context) bool {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return true
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// detach runs f in the background with a context that keeps ctx's values,
// not its end, and lasts at most timeout. The caller does not wait.
func (v *Vault) detach(ctx context.Context, timeout time.Duration, f func(context.Context)) {
	detachOn(&v.bg, ctx, timeout, f)
}

func detachOn(ts *tasks, ctx context.Context, timeout time.Duration, f func(context.Context)) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	ts.Go(func() {
		defer cancel()
		f(dctx)
	})
}

// lateEnd is when a call whose context is ctx must have returned: its
// deadline (or now, if it has none or it has passed already) plus
// AuditMargin.
func lateEnd(ctx context.Context) time.Time {
	end := time.Now().Add(AuditMargin)
	if dl, ok := ctx.Deadline(); ok && dl.Add(AuditMargin).Before(end) {
		end = dl.Add(AuditMargin)
	}
	return end
}

// late runs f, the record (or other small work) that must follow the
// call's own failure, in the background (see the comment above), and
// waits for it while ctx lasts and until lateEnd. It returns f's error, or
// one wrapping ErrAuditUnavailable and ctx's error if f has not finished
// by then (it goes on, bounded by lateTimeout).
func (v *Vault) late(ctx context.Context, f func(context.Context) error) error {
	select {
	case v.lateSlots <- struct{}{}:
	default:
		// Too many already: this one gets the margin only, here.
		lctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), lateEnd(ctx))
		defer cancel()
		return f(lctx)
	}
	done := make(chan error, 1)
	detachOn(&v.records, ctx, lateTimeout, func(lctx context.Context) {
		defer func() { <-v.lateSlots }()
		done <- f(lctx)
	})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(time.Until(lateEnd(ctx)))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("vault: record not durable by the deadline (still being written): %w: %w", ErrAuditUnavailable, context.Cause(ctx))
	}
}

// auditLate appends r, the record of the call's own failure, with late.
func (v *Vault) auditLate(ctx context.Context, r audit.Record) error {
	if r.Time.IsZero() {
		r.Time = v.now().UTC() // when it happened, not when it is written
	}
	return v.late(ctx, func(lctx context.Context) error { return v.audit(lctx, r) })
}
