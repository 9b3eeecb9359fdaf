package detect_test

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/detect/countertest"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

func TestMemoryCounterConformance(t *testing.T) {
	countertest.Run(t, func(t *testing.T) (detect.Counter, detect.Counter) {
		c := detect.NewMemoryCounter(0)
		return c, c
	})
}

func TestStoreCounterConformance(t *testing.T) {
	t.Run("memstore", func(t *testing.T) {
		countertest.Run(t, func(t *testing.T) (detect.Counter, detect.Counter) {
			st := memstore.New()
			return detect.NewStoreCounter(st, "counts"), detect.NewStoreCounter(st, "counts")
		})
	})
	t.Run("fsstore", func(t *testing.T) {
		countertest.Run(t, func(t *testing.T) (detect.Counter, detect.Counter) {
			st, err := fsstore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return detect.NewStoreCounter(st, "counts"), detect.NewStoreCounter(st, "counts")
		})
	})
}

// TestMemoryCounterBounded: a flood of random keys does not grow the
// in-process counter past its bound.
func TestMemoryCounterBounded(t *testing.T) {
	c := detect.NewMemoryCounter(4096)
	slot := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	for i := range 100_000 {
		c.Add(context.Background(), fmt.Sprintf("a/%x/f1m", i), slot, time.Hour)
	}
	if n := c.Len(); n > 4096 {
		t.Fatalf("%d counts held, bound 4096", n)
	}
}

// TestStoreCounterSweep: Sweep removes exactly the slots past their keep time.
func TestStoreCounterSweep(t *testing.T) {
	st := memstore.New()
	c := detect.NewStoreCounter(st, "counts")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	c.Add(ctx, "p/x/v1m", t0, time.Hour)
	c.Add(ctx, "p/x/v1m", t0, time.Hour)
	c.Add(ctx, "p/x/v1d", t0, 9*24*time.Hour)
	if n, err := c.Sweep(ctx, t0.Add(30*time.Minute)); err != nil || n != 0 {
		t.Fatalf("early sweep removed %d (%v)", n, err)
	}
	if n, err := c.Sweep(ctx, t0.Add(3*time.Hour)); err != nil || n != 2 {
		t.Fatalf("sweep after the keep time removed %d (%v), want 2", n, err)
	}
	if n, _ := c.Get(ctx, "p/x/v1d", t0, 9*24*time.Hour); n != 1 {
		t.Fatalf("the long-kept count was swept: %d", n)
	}
}

// FuzzStoreCounterRange: Range parses object names it finds under a key's
// prefix (<slot>/<n>); whatever someone with write access put there, it
// neither panics nor reports a slot outside the range asked for.
func FuzzStoreCounterRange(f *testing.F) {
	f.Add("1764406800/3")
	f.Add("1764406860/1")
	f.Add("x/1")
	f.Add("1764406800/-5")
	f.Add("99999999999999999999/1")
	f.Fuzz(func(t *testing.T, name string) {
		st := memstore.New()
		c := detect.NewStoreCounter(st, "counts")
		slot := time.Unix(1764406800, 0)
		ctx := context.Background()
		if _, err := c.Add(ctx, "p/k/v1m", slot, time.Hour); err != nil {
			t.Fatal(err)
		}
		var prefix string
		for _, k := range st.Keys() {
			prefix = k[:len(k)-len("1764406800/1")]
		}
		st.Put(ctx, prefix+name, strings.NewReader(""), 0, store.PutOptions{})
		ns, err := c.Range(ctx, "p/k/v1m", slot, slot.Add(2*time.Minute), time.Minute, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 3 || ns[0] < 1 {
			t.Fatalf("Range: %v", ns)
		}
	})
}

// listCounter counts the listings a store is asked for.
type listCounter struct {
	store.Store
	lists int
}

func (l *listCounter) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	l.lists++
	return l.Store.List(ctx, prefix)
}

// TestStoreCounterColdWindowCheap: reading two days of hour slots for a
// key never seen (each new principal or address a flood brings) costs a
// listing per day, not one per hour; and such slots are still kept for
// their whole keep time, and swept within a day after it.
func TestStoreCounterColdWindowCheap(t *testing.T) {
	st := &listCounter{Store: memstore.New()}
	c := detect.NewStoreCounter(st, "counts")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	keep := 2 * 24 * time.Hour
	for h := range 48 {
		if _, err := c.Add(ctx, "p/x/f1h", t0.Add(time.Duration(h)*time.Hour), keep); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := c.Range(ctx, "p/x/f1h", t0, t0.Add(47*time.Hour), time.Hour, keep)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range ns {
		if n != 1 {
			t.Fatalf("slot %d reads %d, want 1", i, n)
		}
	}
	if st.lists > 3 {
		t.Errorf("a cold 48-hour range took %d listings, want at most 3 (one per UTC day)", st.lists)
	}
	// The first slot is kept for its keep time...
	if _, err := c.Sweep(ctx, t0.Add(keep)); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Get(ctx, "p/x/f1h", t0, keep); n != 1 {
		t.Fatalf("swept before its keep time: %d", n)
	}
	// ...and gone a day after it.
	if _, err := c.Sweep(ctx, t0.Add(keep+25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	fresh := detect.NewStoreCounter(st, "counts") // no hints of what was swept
	if n, _ := fresh.Get(ctx, "p/x/f1h", t0, keep); n != 0 {
		t.Fatalf("still kept a day past its keep time: %d", n)
	}
}
