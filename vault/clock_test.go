package vault

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/audit"
)

// TestClockSkewDoesNothingIrreversible: an instance whose clock differs
// from the store's by more than the leeway (issue 21: +10 s, ±1 h, +3 h)
// spends, shreds, collects and stores deadlines nothing; it alerts; an
// honest instance on the same store is unaffected; and once its clock
// agrees again it resumes. Over each run: 0 double spends, 0 early shreds,
// 0 duplicate release records.
func TestClockSkewDoesNothingIrreversible(t *testing.T) {
	for _, be := range backends {
		for _, off := range []time.Duration{10 * time.Second, time.Hour, -time.Hour, 3 * time.Hour} {
			t.Run(be.name+"/"+off.String(), func(t *testing.T) {
				ctx := context.Background()
				st := be.new(t)
				kek := testKEK(t)
				honest := openTestVault(t, st, kek, nil)
				clock := honest.clock // the store's clock too
				var skew atomic.Int64
				var al alerts
				bad := openTestVault(t, st, kek, func(c *Config) {
					c.Now = func() time.Time { return clock.Now().Add(time.Duration(skew.Load())) }
					c.Detection.OnAlert = al.on
				})
				skew.Store(int64(off))

				// A document with 30 min left, and a token the honest
				// instance spent.
				doc, err := honest.Put(ctx, Document{Body: bytes.NewReader(image(20<<10, "")), Size: 20 << 10, Subject: "m", Retention: 30 * time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				spent := grant(t, honest, doc.ID, "r")
				if _, err := redeemAll(honest, spent.Token, "r"); err != nil {
					t.Fatal(err)
				}
				fresh := grant(t, honest, doc.ID, "r")

				if _, err := bad.Put(ctx, Document{Body: bytes.NewReader(image(4096, "")), Size: 4096, Subject: "m"}); !errors.Is(err, ErrClockSkew) {
					t.Errorf("Put on a skewed clock: %v, want ErrClockSkew", err)
				}
				if _, err := redeemAll(bad, fresh.Token, "r"); !errors.Is(err, ErrClockSkew) && !errors.Is(err, ErrTokenExpired) {
					t.Errorf("Redeem on a skewed clock: %v, want ErrClockSkew (or ErrTokenExpired)", err)
				}
				if _, err := bad.Admin().Sweep(ctx, testActor); !errors.Is(err, ErrClockSkew) {
					t.Errorf("Sweep on a skewed clock: %v, want ErrClockSkew", err)
				}
				if err := bad.Admin().Delete(ctx, doc.ID, testActor); !errors.Is(err, ErrClockSkew) {
					t.Errorf("Delete on a skewed clock: %v, want ErrClockSkew", err)
				}
				if err := bad.adoptLedger(ctx); !errors.Is(err, ErrClockSkew) {
					t.Errorf("ledger adoption on a skewed clock: %v, want ErrClockSkew", err)
				}
				if n := al.count(AlertClockSkew); n != 1 {
					t.Errorf("%d clock-skew alerts, want 1 per episode", n)
				}
				// Nothing was destroyed or spent.
				if err := readErr(honest, doc.ID); err != nil {
					t.Fatalf("the document was shredded early: %v", err)
				}
				if _, err := redeemAll(honest, spent.Token, "r"); !errors.Is(err, ErrTokenReplayed) {
					t.Fatalf("spent token: %v, want ErrTokenReplayed", err)
				}
				if _, err := redeemAll(honest, fresh.Token, "r"); err != nil {
					t.Fatalf("the token the skewed instance refused was spent: %v", err)
				}

				// The clock is mended: the instance resumes.
				skew.Store(0)
				g := grant(t, honest, doc.ID, "r")
				if _, err := redeemAll(bad, g.Token, "r"); err != nil {
					t.Fatalf("Redeem once the clocks agree: %v", err)
				}
				if _, err := bad.Admin().Sweep(ctx, testActor); err != nil {
					t.Fatalf("Sweep once the clocks agree: %v", err)
				}
				syncAll(t, honest, bad)
				if released := releases(t, st); len(released) != 3 {
					t.Fatalf("%d tokens released, want 3", len(released))
				}
			})
		}
	}
}

// TestClockWithinLeewayAllowed: a difference within ClockLeeway plus the
// store clock's resolution is no skew.
func TestClockWithinLeewayAllowed(t *testing.T) {
	st := memstore.New()
	kek := testKEK(t)
	clock := openTestVault(t, st, kek, nil).clock
	for _, off := range []time.Duration{-DefaultLeeway, DefaultLeeway + clockResolution - time.Millisecond} {
		w := openTestVault(t, st, kek, func(c *Config) {
			c.Now = func() time.Time { return clock.Now().Add(off) }
		})
		if err := w.checkClock(context.Background(), "test"); err != nil {
			t.Fatalf("offset %v: %v", off, err)
		}
	}
}

// TestNoDoubleFoldAfterClockJump (issue 21 point 3): after the clock
// (the vault's and the store's) jumps 2 h forward, two instances sweeping
// at once fold no release a second time, and Verify still passes.
func TestNoDoubleFoldAfterClockJump(t *testing.T) {
	for _, be := range backends {
		for _, jump := range []time.Duration{5 * time.Minute, 2 * time.Hour} {
			t.Run(be.name+"/"+jump.String(), func(t *testing.T) {
				ctx := context.Background()
				st := be.new(t)
				kek := testKEK(t)
				a := openTestVault(t, st, kek, nil)
				b := openTestVault(t, st, kek, nil)
				info := putImage(t, a, image(4096, ""), "m")
				for i := range 10 {
					v := a
					if i%2 == 1 {
						v = b
					}
					if _, err := redeemAll(v, grant(t, v, info.ID, "r").Token, "r"); err != nil {
						t.Fatal(err)
					}
				}
				// At once, while the folds may still be on their way: the
				// clock (a's, b's and the store's) jumps, and both sweep,
				// twice, the second time as if adoptAfter had passed.
				a.clock.Advance(jump)
				for range 2 {
					var wg sync.WaitGroup
					for _, v := range []*testVault{a, b} {
						wg.Go(func() {
							if _, err := v.Admin().Sweep(ctx, testActor); err != nil {
								t.Error(err)
							}
						})
					}
					wg.Wait()
					ageStrays(a.Vault, adoptAfter+time.Second)
					ageStrays(b.Vault, adoptAfter+time.Second)
				}
				syncAll(t, a, b)
				if released := releases(t, st); len(released) != 10 {
					t.Fatalf("%d tokens released in the log, want 10", len(released))
				}
				a.Close(ctx)
				b.Close(ctx)
				if _, err := audit.Verify(ctx, st, a.AuditVerifierKey(), audit.VerifyOptions{Now: a.clock.Now}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
