package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/detect/countertest"
)

// TestRecountFromAudit: the counts rebuilt from the audit log after a
// Limiter lost them (recount) are the counts the detector kept: views
// (grants served or refused by a count), redemptions, decisions and
// hand-ons, refused tokens per principal and per address, refused
// decisions.
func TestRecountFromAudit(t *testing.T) {
	lim := &recordingLimiter{Limiter: NewMemoryLimiter(), adds: map[string]time.Time{}}
	v := openTestVault(t, memstore.New(), testKEK(t), func(c *Config) {
		c.Detection.Limiter, c.Detection.AlertOnly, c.Detection.CanaryRate = lim, true, -1
		c.Detection.Quota = Quota{Documents: 12, Burst: 1000}
	})
	ctx := context.Background()
	var ids []string
	for i := range 20 {
		ids = append(ids, putImage(t, v, image(100+i, ""), fmt.Sprint("m", i)).ID)
	}
	for i, id := range ids[:15] { // the last 3 over the quota: refused, counted
		p := []string{"r1", "r2"}[i%2]
		v.clock.Advance(20 * time.Second)
		g, err := v.Grant(ctx, id, Access{Principal: p, Purpose: "p"})
		if err != nil {
			continue
		}
		if i%3 == 0 {
			if _, err := redeemAll(v, g.Token, p); err != nil {
				t.Fatal(err)
			}
		}
		verdict := []Verdict{Approved, Rejected, HandedOn}[i%3]
		// Decisions about documents not viewed are refused (ErrNotViewed)
		// and counted as refusals: the recount must find those too.
		if err := v.Decide(ctx, id, Decision{Verdict: verdict}, Actor{Principal: p}); err != nil && !errors.Is(err, ErrNotViewed) {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		v.clock.Advance(time.Minute)
		v.Redeem(ctx, "idv1_forged", Requester{Principal: "prober", RemoteAddr: fmt.Sprintf("203.0.113.%d:4000", i%2)})
	}
	rec := recountNow(t, v, ctx)
	if len(rec) < 20 {
		t.Fatalf("%d counts recounted", len(rec))
	}
	for _, sc := range rec {
		var want int64
		if shared, ok := strings.CutSuffix(sc.Key, "/0"); ok && strings.HasPrefix(sc.Key, "vault/") {
			for i := range 8 {
				n, _ := lim.Get(ctx, fmt.Sprint(shared, "/", i), sc.Slot, sc.Keep)
				want += n
			}
		} else {
			want, _ = lim.Get(ctx, sc.Key, sc.Slot, sc.Keep)
		}
		if sc.N != want {
			t.Errorf("%v: the detector counted %d", sc, want)
		}
	}
	// And every count the detector added (but its alert markers) is there.
	got := map[string]bool{}
	for _, sc := range rec {
		got[fmt.Sprint(sc.Key, "@", sc.Slot.Unix())] = true
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	for k := range lim.adds {
		key, at, _ := strings.Cut(k, "@")
		if strings.HasPrefix(key, "vault/") {
			key = key[:strings.LastIndexByte(key, '/')] + "/0"
		}
		if !strings.HasPrefix(key, "alert/") && !got[key+"@"+at] {
			t.Errorf("the detector counted %s; the recount did not", k)
		}
	}
}

// recordingLimiter notes every key and slot added.
type recordingLimiter struct {
	Limiter
	mu   sync.Mutex
	adds map[string]time.Time
}

func (r *recordingLimiter) Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	r.mu.Lock()
	r.adds[fmt.Sprint(key, "@", slot.Unix())] = slot.Add(keep)
	r.mu.Unlock()
	return r.Limiter.Add(ctx, key, slot, keep)
}

func (r *recordingLimiter) Local() bool { return true }

func recountNow(t *testing.T, v *testVault, ctx context.Context) []detect.SlotCount {
	t.Helper()
	if err := v.Admin().SyncAudit(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := v.recount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// The store limiter passes the Counter conformance suite on real MinIO
// (two clients of one bucket: two instances).
func TestStoreLimiterConformanceMinIO(t *testing.T) {
	countertest.Run(t, func(t *testing.T) (detect.Counter, detect.Counter) {
		st := s3Backend(t)
		return NewStoreLimiter(st), NewStoreLimiter(st)
	})
}

// TestLimiterAcrossInstances: two Vault instances on one MinIO bucket
// share one quota by default. With an in-process limiter the second
// instance is refused at Open, unless the user opts out, and then each
// instance has its own quota.
func TestLimiterAcrossInstances(t *testing.T) {
	const quota = 5
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			st := s3Backend(t)
			kek := testKEK(t)
			mod := func(c *Config) {
				c.Detection.Quota = Quota{Documents: quota, Burst: 100}
				if local {
					c.Detection.Limiter = NewMemoryLimiter()
					c.Detection.AllowLocalLimiter = true
				}
			}
			a := openTestVault(t, st, kek, mod)
			if local {
				_, err := Open(context.Background(), Config{Store: st, KEK: kek, Now: a.clock.Now, Detection: DetectionConfig{Limiter: NewMemoryLimiter()}})
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("second instance with an in-process limiter: %v, want ErrInvalidArgument", err)
				}
			}
			b := openTestVault(t, st, kek, mod)
			granted := 0
			for i := range 2 * quota {
				v := []*testVault{a, b}[i%2]
				info := putImage(t, v, image(100+i, ""), "m")
				_, err := v.Grant(context.Background(), info.ID, Access{Principal: "reviewer", Purpose: "p"})
				switch {
				case err == nil:
					granted++
				case !errors.Is(err, ErrQuotaExceeded):
					t.Fatal(err)
				}
			}
			want := quota
			if local {
				want = 2 * quota // one quota per instance: what the opt-out costs
			}
			if granted != want {
				t.Fatalf("granted %d documents across two instances, want %d", granted, want)
			}
		})
	}
}

// A lone instance may use an in-process limiter; Close clears its marker,
// so a restart is not taken for a second instance.
func TestLocalLimiterAlone(t *testing.T) {
	st := memstore.New()
	kek := testKEK(t)
	for range 2 {
		v, err := Open(context.Background(), Config{Store: st, KEK: kek, Detection: DetectionConfig{Limiter: NewMemoryLimiter()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSweepCollectsLimiterCounts(t *testing.T) {
	st := memstore.New()
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(100, ""), "m")
	grant(t, v, info.ID, "r")
	counts := func() (n int) {
		for _, k := range st.Keys() {
			if strings.HasPrefix(k, "counts/") || strings.HasPrefix(k, "limits/") {
				n++
			}
		}
		return n
	}
	if counts() == 0 {
		t.Fatal("no limiter counts after a grant")
	}
	if err := v.sweepLimiter(context.Background()); err != nil || counts() == 0 {
		t.Fatalf("sweep removed fresh counts (%v)", err)
	}
	v.clock.Advance(10 * 24 * time.Hour)
	if err := v.sweepLimiter(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n != 0 {
		t.Fatalf("%d stale counts left", n)
	}
}

// TestBurstFreezeExact: 100 parallel grant+redeem by one principal, with
// FreezeOnAlert, on the default (store) limiter on MinIO and on the
// in-process one: no more documents are served than the burst threshold,
// exactly one bulk-access alert is raised, and everything past the
// threshold is refused.
func TestBurstFreezeExact(t *testing.T) {
	backends := map[string]func(t *testing.T) (*testVault, *alertLog){
		"store-minio": func(t *testing.T) (*testVault, *alertLog) {
			al := &alertLog{}
			return openTestVault(t, s3Backend(t), testKEK(t), func(c *Config) { c.Detection.OnAlert = al.add; c.Detection.FreezeOnAlert = true }), al
		},
		"memory": func(t *testing.T) (*testVault, *alertLog) {
			al := &alertLog{}
			return openTestVault(t, memstore.New(), testKEK(t), func(c *Config) {
				c.Detection.OnAlert = al.add
				c.Detection.FreezeOnAlert = true
				c.Detection.Limiter = NewMemoryLimiter()
			}), al
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			v, al := open(t)
			ids := make([]string, 100)
			for i := range ids {
				ids[i] = putImage(t, v, image(100+i, ""), "m").ID
			}
			var served atomic.Int64
			var wg sync.WaitGroup
			ctx := context.Background()
			for _, id := range ids {
				wg.Go(func() {
					g, err := v.Grant(ctx, id, Access{Principal: "thief", Purpose: "p"})
					if err != nil {
						if !errors.Is(err, ErrQuotaExceeded) {
							t.Error(err)
						}
						return
					}
					rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "thief"})
					if err != nil {
						// A spend the store confirmed too late (a loaded
						// machine) serves nothing: a refusal too.
						if !errors.Is(err, ErrQuotaExceeded) && !errors.Is(err, errSpendUnconfirmed) {
							t.Error(err)
						}
						return
					}
					io.Copy(io.Discard, rc)
					rc.Close()
					served.Add(1)
				})
			}
			wg.Wait()
			if n := served.Load(); n > DefaultBurst {
				t.Fatalf("%d documents served in a parallel burst, threshold %d", n, DefaultBurst)
			}
			bulk := 0
			for _, k := range al.kinds() {
				if k == AlertBulk {
					bulk++
				}
			}
			if bulk != 1 {
				t.Fatalf("bulk alerts %d, want exactly 1: %v", bulk, al.kinds())
			}
			t.Logf("served %d of 100, alerts %v", served.Load(), al.kinds())
		})
	}
}
