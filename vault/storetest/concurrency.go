package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

// testConcurrent runs Put, Get, List and Delete from several goroutines on
// distinct keys sharing directories, with a lister running beside them;
// run it under -race.
func testConcurrent(t *testing.T, s store.Store) {
	const workers, rounds = 8, 15
	stop := make(chan struct{})
	errs := make(chan error, workers+1)
	var workersWG, listerWG sync.WaitGroup
	listerWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var prev string
			for k, err := range s.List(t.Context(), "conc/") {
				if err != nil {
					errs <- fmt.Errorf("concurrent List: %w", err)
					return
				}
				if prev != "" && k <= prev {
					errs <- fmt.Errorf("concurrent List yielded %q after %q", k, prev)
					return
				}
				prev = k
			}
		}
	})
	for w := range workers {
		workersWG.Go(func() {
			errs <- worker(t, s, w, rounds)
		})
	}
	workersWG.Wait()
	close(stop)
	listerWG.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := listAll(t, s, "conc/"); len(got) != 0 {
		t.Fatalf("after every worker deleted its keys, %d remain", len(got))
	}
}

func worker(t *testing.T, s store.Store, w, rounds int) error {
	ctx := t.Context()
	for r := range rounds {
		// Keys of all workers share the directory "conc/<r%3>/", so a
		// backend that prunes empty directories races its own writers.
		keys := []string{
			fmt.Sprintf("conc/%d/w%d-a", r%3, w),
			fmt.Sprintf("conc/%d/w%d-b", r%3, w),
			fmt.Sprintf("conc/%d/sub/w%d", r%3, w),
		}
		for i, k := range keys {
			if err := put(ctx, s, k, payload(uint64(1000*w+10*r+i), 100+i), store.PutOptions{IfAbsent: i == 2}); err != nil {
				return fmt.Errorf("worker %d: Put(%q): %w", w, k, err)
			}
		}
		for i, k := range keys {
			got, err := get(ctx, s, k)
			if err != nil {
				return fmt.Errorf("worker %d: Get(%q): %w", w, k, err)
			}
			if !bytes.Equal(got, payload(uint64(1000*w+10*r+i), 100+i)) {
				return fmt.Errorf("worker %d: Get(%q) returned another object's bytes", w, k)
			}
		}
		var mine []string
		for k, err := range s.List(ctx, fmt.Sprintf("conc/%d/", r%3)) {
			if err != nil {
				return fmt.Errorf("worker %d: List: %w", w, err)
			}
			if slices.Contains(keys, k) {
				mine = append(mine, k)
			}
		}
		if want := slices.Sorted(slices.Values(keys)); !slices.Equal(mine, want) {
			return fmt.Errorf("worker %d: List yields its keys as %q, want %q", w, mine, want)
		}
		for _, k := range keys {
			if err := s.Delete(ctx, k); err != nil {
				return fmt.Errorf("worker %d: Delete(%q): %w", w, k, err)
			}
			if _, err := get(ctx, s, k); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("worker %d: Get(%q) after Delete: err = %v, want store.ErrNotFound", w, k, err)
			}
		}
	}
	return nil
}
