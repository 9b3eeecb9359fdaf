package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/detect"
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
