package audit

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

// clockStore is a memstore that tells the storage's time (store.Clock)
// from its own clock, or fails to.
type clockStore struct {
	*memstore.Store
	mu   sync.Mutex
	now  func() time.Time
	fail bool
}

var errNoTime = errors.New("clock unreadable")

func (c *clockStore) Time(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return time.Time{}, errNoTime
	}
	return c.now(), nil
}

func (c *clockStore) setFail(b bool) {
	c.mu.Lock()
	c.fail = b
	c.mu.Unlock()
}

var _ store.Clock = (*clockStore)(nil)

// skewed returns c's time moved by d: an instance whose clock is off.
func skewed(c *clock, d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

// advance moves c forward by d.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// leasesOf returns the signed leases stored for log, by generation.
func leasesOf(t *testing.T, st *memstore.Store, log string) map[int64]lease {
	t.Helper()
	_, vkey := keys(t)
	known := mustVerifiers(t, vkey)
	out := map[int64]lease{}
	for _, k := range st.Keys() {
		name, ok := strings.CutPrefix(k, leaseDir(log))
		if !ok {
			continue
		}
		g, ok := parseSeqName(name)
		if !ok {
			t.Fatalf("stray lease object %s", k)
		}
		b, _ := st.Bytes(k)
		l, err := openLease(b, known)
		if err != nil {
			t.Fatalf("lease %s: %v", k, err)
		}
		out[g] = l
	}
	return out
}

// TestLeaseExpiryOnStoreClock: an instance whose own clock runs three days
// ahead does not take over a log that is live by the store's clock, and
// writes its own lease's expiry on the store's clock too; once the
// writer's lease has expired on the store's clock, the log is continued.
// A store whose clock cannot be read blocks the takeover of a live lease.
func TestLeaseExpiryOnStoreClock(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	storage := newClock()
	cs := &clockStore{Store: newTestStore(), now: storage.Now}
	// The writer's renewals run on a real-time ticker of LeaseTTL/3 = 20
	// min: none happens during the test.
	live := mustAppender(t, cs, skey, AppenderOptions{Now: storage.Now, LeaseTTL: time.Hour})
	for i := range 3 {
		if _, err := live.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ahead := mustAppender(t, cs, skey, AppenderOptions{Now: skewed(storage, 72*time.Hour), LeaseTTL: time.Hour})
	if ahead.LogID() == live.LogID() {
		t.Fatal("an instance three days ahead took over a live log")
	}
	if _, err := ahead.Append(ctx, sampleRecord(9)); err != nil {
		t.Fatal(err)
	}
	if l := leasesOf(t, cs.Store, ahead.LogID())[0]; l.expires.After(storage.Now().Add(time.Hour + time.Minute)) {
		t.Fatalf("lease expiry %v written on the instance's own clock, not the store's (%v)", l.expires, storage.Now())
	}

	// The writer stops renewing (a crash): past its expiry on the store's
	// clock, the log is continued, but not while that clock is unreadable.
	storage.advance(2 * time.Hour)
	cs.setFail(true)
	blind := mustAppender(t, cs, skey, AppenderOptions{Now: skewed(storage, 72*time.Hour)})
	if blind.LogID() == live.LogID() {
		t.Fatal("a live lease was taken over while the store's clock could not be read")
	}
	cs.setFail(false)
	// Two logs are idle now (the live one and the skewed instance's, both
	// expired): the writer's is continued by one of the next two.
	continued := false
	for range 2 {
		heir := mustAppender(t, cs, skey, AppenderOptions{Now: storage.Now})
		if heir.LogID() != live.LogID() && heir.LogID() != ahead.LogID() {
			t.Fatalf("an expired log was not continued: %s", heir.LogID())
		}
		continued = continued || heir.LogID() == live.LogID()
	}
	if !continued {
		t.Fatal("the expired log was not continued")
	}
	verifyOK(t, cs.Store, vkey, VerifyOptions{Now: storage.Now})
}

// TestClosedByLoserStillVerifies: an instance whose clock runs days ahead
// (on a store that tells no time, noClock) takes over a live log; the
// writer that lost it then closes. It must not write its final checkpoint
// in the log now held by the other: the log still verifies, before and
// after the new holder closes it.
func TestClosedByLoserStillVerifies(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// between runs after the takeover, before the loser closes.
		between func(t *testing.T, st *memstore.Store, loser, taker *Appender)
	}{
		{"taker appends first", func(t *testing.T, _ *memstore.Store, _, taker *Appender) {
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
		{"loser appends first", func(t *testing.T, _ *memstore.Store, loser, taker *Appender) {
			// The loser's batch lands after the taker loaded the log; the
			// taker's next batch collides and moves to a fresh log.
			if _, err := loser.Append(ctx, sampleRecord(40)); err != nil {
				t.Fatal(err)
			}
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
		{"taker renewed past the generation it took", func(t *testing.T, st *memstore.Store, loser, taker *Appender) {
			// As a renewal does: the next generation written, the one
			// before deleted, so the loser's create-only closing
			// generation lands in the gap.
			log := loser.LogID()
			b, ok := st.Bytes(leaseKey(log, 1))
			if !ok {
				t.Fatal("no generation 1")
			}
			st.SetBytes(leaseKey(log, 2), b)
			if err := st.Delete(ctx, leaseKey(log, 1)); err != nil {
				t.Fatal(err)
			}
			taker.leaseMu.Lock()
			taker.lease.gen = 2
			taker.leaseMu.Unlock()
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			st := newTestStore()
			loser := mustAppender(t, noClock{st}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
			for i := range 5 {
				if _, err := loser.Append(ctx, sampleRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := loser.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := loser.Append(ctx, sampleRecord(5)); err != nil { // an unsealed tail
				t.Fatal(err)
			}
			taker := mustAppender(t, noClock{st}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour)})
			if taker.LogID() != loser.LogID() {
				t.Fatal("setup: the skewed instance did not take the log over")
			}
			tc.between(t, st, loser, taker)
			if err := loser.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
			for _, k := range checkpointKeys(st, loser.LogID()) {
				if strings.HasSuffix(k, "-final") {
					t.Fatalf("the writer that lost the log closed it: %s", k)
				}
			}
			if err := taker.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
		})
	}
}

// TestTakeoverWhileClosing: an instance days ahead takes a log over while
// its writer is between its closing lease and its final checkpoint (the
// closing lease looks expired on the instance's clock). Whichever final
// checkpoint lands first, the new holder's records follow a reopen
// checkpoint: the log verifies throughout.
func TestTakeoverWhileClosing(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	for _, takerFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "taker writes the final", false: "closer's final lands first"}[takerFirst], func(t *testing.T) {
			c := newClock()
			hs := &hookStore{Store: newTestStore()}
			closer := mustAppender(t, noClock{hs}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
			for i := range 4 {
				if _, err := closer.Append(ctx, sampleRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			var taker *Appender
			take := func() {
				a, err := NewAppender(ctx, noClock{hs.Store}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour), CheckpointEvery: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				taker = a
			}
			hs.set(func(_ int, key string, _ store.PutOptions) error {
				if strings.HasSuffix(key, "-final") && takerFirst && taker == nil {
					take()
				}
				return nil
			}, func(_ int, key string) error {
				if strings.HasSuffix(key, "-final") && !takerFirst && taker == nil {
					take()
				}
				return nil
			})
			if err := closer.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if taker == nil {
				t.Fatal("setup: nobody took the log over")
			}
			defer taker.Close(ctx)
			if taker.LogID() != closer.LogID() {
				t.Fatalf("setup: the taker writes %s", taker.LogID())
			}
			verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now})
			for i := range 3 {
				if _, err := taker.Append(ctx, sampleRecord(10+i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := taker.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			l := verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now}).Logs[0]
			if l.Records != 7 || l.FinalSize != 4 || l.Unsealed != 0 {
				t.Fatalf("report %+v", l)
			}
			if err := taker.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now})
		})
	}
}

// deafLister hangs listings under prefix, ignoring their context, until
// release is closed.
type deafLister struct {
	*memstore.Store
	mu      sync.Mutex
	prefix  string // "": none
	release chan struct{}
}

func (d *deafLister) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	d.mu.Lock()
	deaf := d.prefix != "" && strings.HasPrefix(prefix, d.prefix)
	d.mu.Unlock()
	if deaf {
		<-d.release
	}
	return d.Store.List(ctx, prefix)
}

// TestCloseBoundedWhenListingHangs: the listings Close makes in a log it
// lost (which checkpoints exist, which lease generations) return when
// Close's context ends, even on a store deaf to it.
func TestCloseBoundedWhenListingHangs(t *testing.T) {
	skey, _ := keys(t)
	ctx := context.Background()
	c := newClock()
	dl := &deafLister{Store: newTestStore(), release: make(chan struct{})}
	defer close(dl.release)
	loser := mustAppender(t, noClock{dl}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
	for i := range 3 {
		if _, err := loser.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	taker := mustAppender(t, noClock{dl.Store}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour)})
	if taker.LogID() != loser.LogID() {
		t.Fatal("setup: no takeover")
	}
	dl.mu.Lock()
	dl.prefix = auditPrefix // from now on: the appenders above listed freely
	dl.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- loser.Close(cctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Close = %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on a hung listing past its context")
	}
}
