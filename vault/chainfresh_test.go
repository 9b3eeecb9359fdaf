package vault

import (
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// getSpy counts the Gets that found an object, by key, once armed; with
// gate set, the first Get of a key under gatePrefix (done against the
// store before it waits) signals entered and waits for release.
type getSpy struct {
	store.Store
	armed atomic.Bool

	mu    sync.Mutex
	found map[string]int

	gatePrefix string
	gateOnce   sync.Once
	gateArmed  atomic.Bool
	entered    chan struct{}
	release    chan struct{}
}

func newGetSpy(st store.Store) *getSpy {
	return &getSpy{Store: st, found: map[string]int{}, entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *getSpy) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if s.armed.Load() {
		s.mu.Lock()
		s.found[key]++
		if err != nil {
			s.found[key]-- // counted below as a miss
			s.found["miss:"+key]++
		}
		s.mu.Unlock()
	}
	if s.gateArmed.Load() && strings.HasPrefix(key, s.gatePrefix) {
		gated := false
		s.gateOnce.Do(func() { gated = true })
		if gated {
			close(s.entered)
			<-s.release
		}
	}
	return rc, err
}

// count returns how many Gets of keys matching re were made (found and
// missed).
func (s *getSpy) count(re *regexp.Regexp) (found, missed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.found {
		if m, ok := strings.CutPrefix(k, "miss:"); ok {
			if re.MatchString(m) {
				missed += n
			}
		} else if re.MatchString(k) {
			found += n
		}
	}
	return found, missed
}

// TestChainFreshSharesReads: concurrent decisions on a stale view of the
// state chain share one read of it instead of queueing one read each
// behind its lock (before: one GET per caller, eight at concurrency 8).
func TestChainFreshSharesReads(t *testing.T) {
	ctx := context.Background()
	spy := newGetSpy(memstore.New())
	v := openTestVault(t, spy, testKEK(t), nil)
	spy.gatePrefix = audit.StatePrefix
	v.chain.smu.Lock()
	v.chain.synced = time.Now().Add(-time.Second)
	v.chain.smu.Unlock()
	spy.armed.Store(true)
	spy.gateArmed.Store(true)
	mac := v.principalMAC("reviewer")
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := v.chain.isFrozen(ctx, mac); err != nil {
			t.Error(err)
		}
	})
	<-spy.entered // the first read is under way
	for range 7 {
		wg.Go(func() {
			if _, err := v.chain.isFrozen(ctx, mac); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let them queue (the bound holds either way)
	close(spy.release)
	wg.Wait()
	found, missed := spy.count(regexp.MustCompile("^" + regexp.QuoteMeta(audit.StatePrefix)))
	if n := found + missed; n > 3 { // 2, and one of the background follow (followLoop)
		t.Errorf("8 concurrent freeze checks made %d reads of the state chain, want at most 3", n)
	}
}

// TestChainFreshMissesNoFreeze: a check sees a freeze written on another
// instance before it started, unless its view is at most chainFresh old,
// also while a read of the chain that started earlier (and may have missed
// the freeze) is in flight: a read in flight serves a check only if it
// started after the check or less than chainFresh before it. (Judging a
// read by when it ended would let one that started before the freeze
// serve the check: the naive single flight.)
func TestChainFreshMissesNoFreeze(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	spy := newGetSpy(mem)
	kek := testKEK(t)
	a := openTestVault(t, spy, kek, nil)
	b := openTestVault(t, mem, kek, nil)
	spy.gatePrefix = audit.StatePrefix
	a.chain.smu.Lock()
	a.chain.synced = time.Now().Add(-time.Second)
	a.chain.smu.Unlock()
	spy.gateArmed.Store(true)
	mac := a.principalMAC("thief")
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = a.chain.isFrozen(ctx, mac) }) // reads, finds nothing, waits
	<-spy.entered
	// The read in flight ages past chainFresh (the rule runs on the
	// monotonic clock, which a test cannot move).
	time.Sleep(chainFresh + 20*time.Millisecond)
	if !b.freeze(ctx, "thief") {
		t.Fatal("freeze not written")
	}
	var frozen bool
	var ferr error
	wg.Go(func() { frozen, ferr = a.chain.isFrozen(ctx, mac) })
	time.Sleep(20 * time.Millisecond) // let it queue behind the first read
	close(spy.release)
	wg.Wait()
	if ferr != nil || !frozen {
		t.Fatalf("a check that started after the freeze: frozen %v, %v", frozen, ferr)
	}
}
