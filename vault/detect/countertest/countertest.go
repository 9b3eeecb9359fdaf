// Package countertest is the conformance suite every detect.Counter runs:
// the in-process one, the store-backed one (on every store backend) and the
// Redis one, so all three keep the same contract.
package countertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/detect"
)

// Run runs the suite. open returns two handles on one fresh set of counts
// (two processes sharing a store or a Redis; for an in-process counter,
// the same value twice). A detect.Restorer starts without counts (its
// first call fails with detect.ErrCountsLost); the suite checks that, then
// restores an empty set before the other tests.
func Run(t *testing.T, open func(t *testing.T) (detect.Counter, detect.Counter)) {
	ctx := context.Background()
	raw := open
	open = func(t *testing.T) (detect.Counter, detect.Counter) {
		a, b := raw(t)
		if r, ok := a.(detect.Restorer); ok {
			if err := r.Restore(ctx, func(context.Context) ([]detect.SlotCount, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
		}
		return a, b
	}
	// A current slot: a counter may expire slots past their keep time.
	slot := time.Now().UTC().Truncate(time.Minute)
	const keep = 3 * time.Hour

	t.Run("Sequence", func(t *testing.T) {
		a, b := open(t)
		for i := int64(1); i <= 5; i++ {
			c := []detect.Counter{a, b}[i%2]
			n, err := c.Add(ctx, "p/k1/v1m", slot, keep)
			if err != nil || n != i {
				t.Fatalf("Add %d: %d, %v", i, n, err)
			}
		}
		for _, c := range []detect.Counter{a, b} {
			if n, err := c.Get(ctx, "p/k1/v1m", slot, keep); err != nil || n != 5 {
				t.Fatalf("Get: %d, %v; want 5", n, err)
			}
		}
	})
	t.Run("Independent", func(t *testing.T) {
		a, b := open(t)
		mustAdd(t, a, "p/k1/v1m", slot, keep)
		mustAdd(t, a, "p/k1/v1m", slot, keep)
		for _, c := range []struct {
			key  string
			slot time.Time
		}{{"p/k2/v1m", slot}, {"p/k1/v1m", slot.Add(time.Minute)}, {"p/k1/v1h", slot}} {
			if n, err := b.Get(ctx, c.key, c.slot, keep); err != nil || n != 0 {
				t.Fatalf("Get(%s, %v) of nothing added: %d, %v", c.key, c.slot, n, err)
			}
			if n := mustAdd(t, b, c.key, c.slot, keep); n != 1 {
				t.Fatalf("first Add of %s at %v: %d", c.key, c.slot, n)
			}
		}
		if n, _ := b.Get(ctx, "p/k1/v1m", slot, keep); n != 2 {
			t.Fatalf("count disturbed by other keys and slots: %d", n)
		}
	})
	// Parallel Adds, half on each handle, get the tickets 1..N exactly
	// once each: a threshold is crossed by exactly one caller.
	t.Run("ParallelTickets", func(t *testing.T) {
		a, b := open(t)
		const n = 100
		got := make([]int64, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				c := []detect.Counter{a, b}[i%2]
				v, err := c.Add(ctx, "p/burst/v1m", slot, keep)
				if err != nil {
					errs <- err
				}
				got[i] = v
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		slices.Sort(got)
		for i, v := range got {
			if v != int64(i+1) {
				t.Fatalf("tickets are not 1..%d exactly once: %v", n, got)
			}
		}
		if v, err := a.Get(ctx, "p/burst/v1m", slot, keep); err != nil || v != n {
			t.Fatalf("Get after %d parallel Adds: %d, %v", n, v, err)
		}
	})
	// A handle that fell behind (the other added many) still counts right.
	t.Run("CatchUp", func(t *testing.T) {
		a, b := open(t)
		mustAdd(t, b, "p/k/v1m", slot, keep)
		for range 37 {
			mustAdd(t, a, "p/k/v1m", slot, keep)
		}
		if n := mustAdd(t, b, "p/k/v1m", slot, keep); n != 39 {
			t.Fatalf("Add on a stale handle: %d, want 39", n)
		}
	})
	t.Run("Restore", func(t *testing.T) {
		a, b := raw(t)
		r, ok := a.(detect.Restorer)
		if !ok {
			t.Skip("not a detect.Restorer")
		}
		if _, err := b.Add(ctx, "p/k/v1m", slot, keep); !errors.Is(err, detect.ErrCountsLost) {
			t.Fatalf("Add before any restore: %v, want ErrCountsLost", err)
		}
		if _, err := b.Get(ctx, "p/k/v1m", slot, keep); !errors.Is(err, detect.ErrCountsLost) {
			t.Fatalf("Get before any restore: %v, want ErrCountsLost", err)
		}
		// Two restore at once (two instances): one recounts, both return
		// once the counts are whole.
		var recounts sync.WaitGroup
		var mu sync.Mutex
		calls := 0
		recount := func(context.Context) ([]detect.SlotCount, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return []detect.SlotCount{{Key: "p/k/v1m", Slot: slot, Keep: keep, N: 7}, {Key: "p/k/v1h", Slot: slot.Truncate(time.Hour), Keep: keep, N: 3}}, nil
		}
		errs := make([]error, 2)
		for i, c := range []detect.Counter{a, b} {
			recounts.Go(func() { errs[i] = c.(detect.Restorer).Restore(ctx, recount) })
		}
		recounts.Wait()
		if errs[0] != nil || errs[1] != nil || calls != 1 {
			t.Fatalf("concurrent restores: %v, %v; %d recounts, want 1", errs[0], errs[1], calls)
		}
		if n, err := b.Get(ctx, "p/k/v1m", slot, keep); err != nil || n != 7 {
			t.Fatalf("Get after restore: %d, %v; want 7", n, err)
		}
		if n := mustAdd(t, a, "p/k/v1m", slot, keep); n != 8 {
			t.Fatalf("Add after restore: %d, want 8", n)
		}
		// A restore of whole counts changes nothing.
		if err := r.Restore(ctx, func(context.Context) ([]detect.SlotCount, error) {
			t.Fatal("recount called while the counts are whole")
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if n, _ := b.Get(ctx, "p/k/v1h", slot.Truncate(time.Hour), keep); n != 3 {
			t.Fatalf("restored hour count %d, want 3", n)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		a, _ := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := a.Add(cctx, "p/k/v1m", slot, keep); err == nil {
			// An in-process counter needs no I/O and may ignore ctx.
			if _, ok := a.(interface{ Local() bool }); !ok {
				t.Fatal("Add with a cancelled context succeeded on a shared counter")
			}
		}
	})
}

func mustAdd(t *testing.T, c detect.Counter, key string, slot time.Time, keep time.Duration) int64 {
	t.Helper()
	n, err := c.Add(context.Background(), key, slot, keep)
	if err != nil {
		t.Fatal(fmt.Errorf("add: %w", err))
	}
	return n
}
