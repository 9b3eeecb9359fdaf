package vault

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// Deadlines.
//
// Every call of the Vault returns by its context's deadline plus
// DeadlineMargin, whatever its dependencies do: a store, a KMS or an audit
// store that is killed, hangs (SIGSTOP) or fails mid-call. Each dependency
// call is made with the caller's context, so it ends with it. What must
// follow the call's failure is bounded and never blocks it beyond that:
//
//   - the record of the call's own failure (a refusal of Put, Grant,
//     Redeem or Delete, an alert, Rewrap's failure): written with a
//     context that keeps the caller's values and outlives its end by
//     AuditMargin, so that a refusal caused by a KMS or a store that hung
//     until the deadline is still recorded ("kek-unavailable"); then the
//     call returns, recorded or not. It runs on its own goroutine (at most
//     maxLate at once, the rest wait for a slot within the margin), so the
//     call returns on time even if the record's store ignores its
//     context. It does not go on after the margin: on a
//     store that does not answer, retrying records would only pile up
//     calls it ignores (see the audit appender's bound);
//   - the removal of what a failed call wrote (a failed Put's objects, a
//     shred's claim, a quarantine mark): in the background only, bounded
//     by lateTimeout (PutCleanupTimeout for Put), at most maxCleanups at
//     once; what it cannot remove, or what is over that bound, Sweep
//     collects.
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
	// maxLate bounds the failure records on goroutines of their own at
	// once (a flood of refusals while the audit store hangs); past it, a
	// record waits for a slot within the same margin.
	maxLate = 256
	// maxCleanups bounds the background cleanups at once (on a store that
	// ignores its context they would pile up); past it, Sweep collects.
	maxCleanups = 256
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

// inParallel runs work on every job that feed sends, on workers goroutines,
// and hands each job's report and error to merge (one at a time, as each
// job ends). The first error of work cancels the context of the rest and
// of feed; send reports false once that context has ended, and feed
// should then stop. inParallel returns the first error of work, else
// feed's, else the context's.
func inParallel[J, R any](ctx context.Context, workers int,
	feed func(ctx context.Context, send func(J) bool) error,
	work func(ctx context.Context, j J, r *R) error,
	merge func(r R, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan J)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				var r R
				err := work(ctx, j, &r)
				mu.Lock()
				merge(r, err)
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	feedErr := feed(ctx, func(j J) bool {
		select {
		case jobs <- j:
		case <-ctx.Done():
		}
		return ctx.Err() == nil
	})
	close(jobs)
	wg.Wait()
	return firstError(firstErr, feedErr, ctx.Err())
}

// detach runs f in the background with a context that keeps ctx's values,
// not its end, and lasts at most timeout. The caller does not wait. When
// maxCleanups are running already, f is not run (what it would remove,
// Sweep collects).
func (v *Vault) detach(ctx context.Context, timeout time.Duration, f func(context.Context)) {
	select {
	case v.cleanupSlots <- struct{}{}:
	default:
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	v.bg.Go(func() {
		defer func() { <-v.cleanupSlots }()
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

// lateContext keeps ctx's values and ends AuditMargin after ctx (at
// lateEnd), lateTimeout at most.
func lateContext(ctx context.Context) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateTimeout)
	var timer atomic.Pointer[time.Timer]
	stop := context.AfterFunc(ctx, func() {
		timer.Store(time.AfterFunc(time.Until(lateEnd(ctx)), cancel))
	})
	return lctx, func() {
		stop()
		if t := timer.Load(); t != nil {
			t.Stop()
		}
		cancel()
	}
}

// late runs f, the record (or other small work) that must follow the
// call's own failure, with lateContext (see the comment above). It returns
// f's error, or one wrapping ErrAuditUnavailable and ctx's error if f has
// not finished when that context ends.
func (v *Vault) late(ctx context.Context, f func(context.Context) error) error {
	lctx, release := lateContext(ctx)
	defer release()
	select {
	case v.lateSlots <- struct{}{}:
	case <-lctx.Done():
		// maxLate records were in flight all along (each lasts its call's
		// margin at most): this one is not written.
		return fmt.Errorf("vault: record not written: %d in flight: %w: %w", maxLate, ErrAuditUnavailable, context.Cause(ctx))
	}
	done := make(chan error, 1)
	v.records.Go(func() {
		defer func() { <-v.lateSlots }()
		done <- f(lctx)
	})
	select {
	case err := <-done:
		return err
	case <-lctx.Done():
		return fmt.Errorf("vault: record not durable by the deadline: %w: %w", ErrAuditUnavailable, context.Cause(ctx))
	}
}

// auditLate appends r, the record of the call's own failure, with late.
func (v *Vault) auditLate(ctx context.Context, r audit.Record) error {
	if r.Time.IsZero() {
		r.Time = v.now().UTC() // when it happened, not when it is written
	}
	return v.late(ctx, func(lctx context.Context) error { return v.audit(lctx, r) })
}
