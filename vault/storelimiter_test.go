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
