package vault

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// holdStore holds back Puts under prefix while armed, until released.
type holdStore struct {
	store.Store
	prefix  string
	mu      sync.Mutex
	armed   bool
	held    chan struct{} // receives once a Put is being held
	release chan struct{}
}

func newHoldStore(st store.Store, prefix string) *holdStore {
	return &holdStore{Store: st, prefix: prefix, held: make(chan struct{}, 16), release: make(chan struct{})}
}

func (h *holdStore) arm() { h.mu.Lock(); h.armed = true; h.mu.Unlock() }

func (h *holdStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	h.mu.Lock()
	armed := h.armed && strings.HasPrefix(key, h.prefix)
	h.mu.Unlock()
	if armed {
		h.held <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.Store.Put(ctx, key, body, size, opts)
}

// TestLedgerWindowSkew reproduces issue 12.1's three double redemptions:
// a sweeper whose clock or leeway differs from the redeemer's, and a spend
// held back by a slow store while a sweep runs. Each must stay a replay.
// collectLedger is what Sweep runs for the ledger.
func TestLedgerWindowSkew(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			const ttl = 10 * time.Second
			// A sweeper and a redeemer that disagree: the sweep at past,
			// after the token's expiry on the redeemer's clock, must not
			// collect the spend entry.
			for _, tc := range []struct {
				name     string
				redeemer func(*Config)
				sweeper  func(redeemer *testVault) func(*Config)
				past     time.Duration
			}{
				{"sweeper clock 1.5s ahead",
					nil,
					// Within the leeway the clock check allows (the store
					// keeps the redeemer's time).
					func(a *testVault) func(*Config) {
						return func(c *Config) { c.Now = func() time.Time { return a.clock.Now().Add(1500 * time.Millisecond) } }
					},
					1900 * time.Millisecond}, // the sweeper's: +3.4 s
				{"sweeper leeway 1s, redeemer 5s",
					func(c *Config) { c.Access.ClockLeeway = 5 * time.Second },
					func(*testVault) func(*Config) { return func(c *Config) { c.Access.ClockLeeway = time.Second } },
					4900 * time.Millisecond}, // one clock for both
			} {
				t.Run(tc.name, func(t *testing.T) {
					st := be.new(t)
					kek := testKEK(t)
					a := openTestVault(t, st, kek, tc.redeemer)
					s := openTestVault(t, st, kek, tc.sweeper(a))
					info := putImage(t, a, image(20<<10, ""), "m")
					g, err := a.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p", TTL: ttl})
					if err != nil {
						t.Fatal(err)
					}
					if _, err := redeemAll(a, g.Token, "r"); err != nil {
						t.Fatal(err)
					}
					a.clock.Set(g.ExpiresAt.Add(tc.past))
					if _, err := s.collectLedger(ctx); err != nil {
						t.Fatal(err)
					}
					if _, err := redeemAll(a, g.Token, "r"); !errors.Is(err, ErrTokenReplayed) {
						t.Fatalf("second redemption after a skewed sweep: %v, want ErrTokenReplayed", err)
					}
				})
			}
			t.Run("spend held back across a sweep", func(t *testing.T) {
				hs := newHoldStore(be.new(t), audit.LedgerPrefix)
				v := openTestVault(t, hs, testKEK(t), nil)
				info := putImage(t, v, image(20<<10, ""), "m")
				g, err := v.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p", TTL: ttl})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := redeemAll(v, g.Token, "r"); err != nil {
					t.Fatal(err)
				}
				v.clock.Set(g.ExpiresAt.Add(DefaultLeeway - 100*time.Millisecond))
				hs.arm()
				done := make(chan error, 1)
				go func() { _, err := redeemAll(v, g.Token, "r"); done <- err }()
				// The replay is refused before its spend (this instance
				// knows the token is spent: logview.go); if it ever got as
				// far as the spend, a sweep in between must not let it
				// through either.
				select {
				case err := <-done:
					if !errors.Is(err, ErrTokenReplayed) {
						t.Fatalf("replay: %v, want ErrTokenReplayed", err)
					}
					return
				case <-hs.held: // the replay passed the expiry check; its spend is held
				}
				v.clock.Advance(1200 * time.Millisecond)
				if _, err := v.collectLedger(ctx); err != nil {
					t.Fatal(err)
				}
				close(hs.release)
				if err := <-done; !errors.Is(err, ErrTokenReplayed) {
					t.Fatalf("held-back replay: %v, want ErrTokenReplayed", err)
				}
			})
			t.Run("entries go once collectible", func(t *testing.T) {
				v := openTestVault(t, be.new(t), testKEK(t), nil)
				info := putImage(t, v, image(5000, ""), "m")
				g := grant(t, v, info.ID, "r")
				if _, err := redeemAll(v, g.Token, "r"); err != nil {
					t.Fatal(err)
				}
				v.fold.flush(t)
				v.clock.Set(ledgerKeepUntil(g.ExpiresAt))
				if n, err := v.collectLedger(ctx); err != nil || n != 0 {
					t.Fatalf("collected %d at the keep-until time (%v)", n, err)
				}
				v.clock.Advance(time.Millisecond)
				if n, err := v.collectLedger(ctx); err != nil || n != 1 {
					t.Fatalf("collected %d after the keep-until time (%v)", n, err)
				}
			})
		})
	}
}

// TestLedgerCollectibleBound checks the argument of spend.go on the rule
// itself: for every leeway, skew within MaxLeeway and spend latency within
// spendWindow, the entry outlives the last moment a spend can reach the
// store.
func TestLedgerCollectibleBound(t *testing.T) {
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, leeway := range []time.Duration{0, time.Second, DefaultLeeway, MaxLeeway} {
		for _, skew := range []time.Duration{-MaxLeeway, 0, MaxLeeway} {
			// Last acceptance on the redeemer's clock, then the spend's
			// latest answer, seen on a sweeper clock skew ahead (the
			// redeemer's own clock may itself be MaxLeeway behind true
			// time: skew covers both).
			lastDecided := exp.Add(leeway).Add(spendWindow).Add(MaxLeeway + skew)
			if ledgerCollectible(exp, lastDecided) {
				t.Errorf("leeway %v skew %v: entry collectible while a spend can still be decided", leeway, skew)
			}
		}
	}
	if !ledgerCollectible(exp, exp.Add(ledgerHorizon+time.Nanosecond)) {
		t.Error("entry never collectible")
	}
}

// TestRedeemExactRecords: one image served, five replays, a redemption of
// a deleted payload and one of a tampered payload leave exactly one
// release record and one refusal each, and nothing else is spent.
func TestRedeemExactRecords(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.new(t)
			v := openTestVault(t, st, testKEK(t), nil)
			served := putImage(t, v, image(40<<10, ""), "m")
			g := grant(t, v, served.ID, "r")
			if _, err := redeemAll(v, g.Token, "r"); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if _, err := redeemAll(v, g.Token, "r"); !errors.Is(err, ErrTokenReplayed) {
					t.Fatalf("replay: %v", err)
				}
			}
			gone := putImage(t, v, image(40<<10, ""), "m")
			gg := grant(t, v, gone.ID, "r")
			if err := st.Delete(ctx, "blobs/"+gone.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := redeemAll(v, gg.Token, "r"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted payload: %v", err)
			}
			bad := putImage(t, v, image(40<<10, ""), "m")
			gb := grant(t, v, bad.ID, "r")
			flipByte(t, st, "blobs/"+bad.ID, 100)
			if _, err := redeemAll(v, gb.Token, "r"); !errors.Is(err, ErrTampered) {
				t.Fatalf("tampered payload: %v", err)
			}
			v.fold.flush(t)
			count := map[string][2]int{}
			for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRedeem}) {
				if err != nil {
					t.Fatal(err)
				}
				c := count[r.Object]
				if r.Outcome == audit.OutcomeOK {
					c[0]++
				} else {
					c[1]++
				}
				count[r.Object] = c
			}
			if c := count[served.ID]; c != [2]int{1, 5} {
				t.Errorf("served document: %d released, %d refused; want 1, 5", c[0], c[1])
			}
			for name, id := range map[string]string{"deleted": gone.ID, "tampered": bad.ID} {
				if c := count[id]; c != [2]int{0, 1} {
					t.Errorf("%s payload: %d released, %d refused; want 0, 1", name, c[0], c[1])
				}
			}
			if n := len(storeKeys(t, st, audit.LedgerPrefix)); n != 1 {
				t.Errorf("%d spend entries, want 1 (refused documents spend nothing)", n)
			}
			rep, err := audit.CheckLedger(ctx, st, v.AuditVerifierKey(), audit.LedgerCheckOptions{Now: v.clock.Now})
			if err != nil || len(rep.Problems) != 0 || rep.Folded != 1 {
				t.Fatalf("ledger check: %+v %v", rep, err)
			}
		})
	}
}

// flipByte flips one byte of the object under key.
func flipByte(t testing.TB, st store.Store, key string, off int) {
	t.Helper()
	b := readKey(t, st, key)
	b[off] ^= 0x01
	if err := st.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), key, strings.NewReader(string(b)), int64(len(b)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerAdoption: a release whose fold never happened (the process
// died after the spend) is folded by the next instance once the entry is
// older than adoptAfter, exactly once, and CheckLedger sees it both ways.
func TestLedgerAdoption(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	kek := testKEK(t)
	a := openTestVault(t, st, kek, nil)
	info := putImage(t, a, image(5000, ""), "m")
	g := grant(t, a, info.ID, "r")
	a.fold.close(context.Background()) // the folder is gone: the spend is not folded
	a.fold = &folder{v: a.Vault, ch: make(chan foldItem), done: make(chan struct{})}
	close(a.fold.done)
	if _, err := redeemAll(a, g.Token, "r"); err != nil {
		t.Fatal(err)
	}
	released := func() int {
		n := 0
		for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK}) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Object == info.ID {
				n++
			}
		}
		return n
	}
	if n := released(); n != 0 {
		t.Fatalf("%d folded records before adoption", n)
	}
	b := openTestVault(t, st, kek, nil)
	b.adopting.Wait() // its first pass: the entry is seen, not adopted
	// An entry is adopted only once this instance has seen it stray for
	// adoptAfter, on its own monotonic clock.
	ageStrays(b.Vault, adoptAfter-time.Second)
	if err := b.adoptLedger(ctx); err != nil {
		t.Fatal(err)
	}
	if n := released(); n != 0 {
		t.Fatalf("adopted an entry seen stray for less than adoptAfter (%d)", n)
	}
	ageStrays(b.Vault, 2*time.Second)
	// Two adopters at once (two instances sweeping) fold it once.
	c := openTestVault(t, st, kek, nil)
	c.adopting.Wait()
	ageStrays(c.Vault, adoptAfter+time.Second)
	var wg sync.WaitGroup
	for _, x := range []*testVault{b, c, b} {
		wg.Go(func() {
			if err := x.adoptLedger(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := released(); n != 1 {
		t.Fatalf("%d release records after adoption, want 1", n)
	}
	rep, err := audit.CheckLedger(ctx, st, b.AuditVerifierKey(), audit.LedgerCheckOptions{Now: b.clock.Now})
	if err != nil || len(rep.Problems) != 0 || rep.Folded != 1 {
		t.Fatalf("ledger check: %+v %v", rep, err)
	}
	// Both ways: a release record whose spend entry vanished is reported.
	if err := st.Delete(ctx, ledgerKeyHex(t, st)); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.CheckLedger(ctx, st, b.AuditVerifierKey(), audit.LedgerCheckOptions{Now: b.clock.Now})
	if err != nil || len(rep.Problems) != 1 {
		t.Fatalf("deleted spend entry not reported: %+v %v", rep, err)
	}
}

func ledgerKeyHex(t testing.TB, st store.Store) string {
	ks := storeKeys(t, st, audit.LedgerPrefix)
	if len(ks) != 1 {
		t.Fatalf("%d ledger entries", len(ks))
	}
	return ks[0]
}

// TestSpendLateServesNothing: a spend whose write answers after the spend
// window serves nothing, is recorded as one spend-unconfirmed refusal and
// no release, and its entry is never folded as a release.
func TestSpendLateServesNothing(t *testing.T) {
	ctx := context.Background()
	hs := newHoldStore(fsBackend(t), audit.LedgerPrefix)
	v := openTestVault(t, hs, testKEK(t), nil)
	info := putImage(t, v, image(20<<10, ""), "m")
	g := grant(t, v, info.ID, "r")
	old := spendDeadline
	spendDeadline = 50 * time.Millisecond
	defer func() { spendDeadline = old }()
	hs.arm()
	done := make(chan error, 1)
	go func() { _, err := redeemAll(v, g.Token, "r"); done <- err }()
	<-hs.held
	time.Sleep(100 * time.Millisecond) // the store answers after the window
	close(hs.release)
	if err := <-done; !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("late spend: %v, want ErrTokenExpired and nothing served", err)
	}
	v.fold.flush(t)
	for range 2 { // seen stray, then adoptAfter later
		if err := v.adoptLedger(ctx); err != nil {
			t.Fatal(err)
		}
		ageStrays(v.Vault, adoptAfter+time.Second)
	}
	ok, unconfirmed := 0, 0
	for r, err := range audit.Scan(ctx, hs, audit.Filter{Event: audit.EventRedeem}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome == audit.OutcomeOK {
			ok++
		} else if r.Reason == audit.ReasonSpendUnconfirmed {
			unconfirmed++
		}
	}
	if ok != 0 || unconfirmed != 1 {
		t.Fatalf("%d release records and %d spend-unconfirmed refusals; want 0 and 1", ok, unconfirmed)
	}
}

// TestFoldedNotAdoptedAgain: releases folded by their owner are never
// adopted again, however long they stray from a fold note (there are none
// any more) and whatever the clock says.
func TestFoldedNotAdoptedAgain(t *testing.T) {
	ctx := context.Background()
	v, st := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "m")
	for range 12 {
		g := grant(t, v, info.ID, "r")
		if _, err := redeemAll(v, g.Token, "r"); err != nil {
			t.Fatal(err)
		}
		v.clock.Advance(time.Second)
	}
	v.fold.flush(t)
	for range 2 {
		if err := v.adoptLedger(ctx); err != nil {
			t.Fatal(err)
		}
		ageStrays(v.Vault, adoptAfter+time.Minute)
	}
	n := 0
	for _, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 12 {
		t.Fatalf("%d release records, want 12 (nothing adopted twice)", n)
	}
	if n := len(storeKeys(t, st, audit.FoldedPrefix)); n != 0 {
		t.Fatalf("%d fold notes written; the logs are the record now", n)
	}
}

// ageStrays makes v's adopter see every entry it has seen stray as d older
// (the monotonic clock adoption ages them by cannot be injected).
func ageStrays(v *Vault, d time.Duration) {
	v.strays.mu.Lock()
	defer v.strays.mu.Unlock()
	for k, t := range v.strays.first {
		v.strays.first[k] = t.Add(-d)
	}
}
