package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
)

func TestStoreLimiterWindow(t *testing.T) {
	st := memstore.New()
	l := NewStoreLimiter(st)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	note := func(member string, at time.Duration) int {
		n, err := l.Note(ctx, "grant-docs/abc", member, t0.Add(at), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, c := range []struct {
		member string
		at     time.Duration
		want   int
	}{
		{"a", 0, 1}, {"b", time.Minute, 2}, {"a", 2 * time.Minute, 2}, // a again: not a new member
		{"c", 30 * time.Minute, 3},
		{"d", 61 * time.Minute, 3},  // b's only mark fell out; a was refreshed at 2 min
		{"e", 125 * time.Minute, 1}, // everything else is over an hour old
	} {
		if got := note(c.member, c.at); got != c.want {
			t.Fatalf("step %d (%s at %v): count %d, want %d", i, c.member, c.at, got, c.want)
		}
	}
	// Stale marks were collected on the way.
	left := 0
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, "limits/") {
			left++
		}
	}
	if left != 1 {
		t.Fatalf("%d limiter marks left, want 1: %v", left, st.Keys())
	}
}

// TestStoreLimiterAcrossInstances: two Vault instances on one MinIO bucket.
// With in-process counts a principal gets a quota per instance; with the
// store limiter, one quota in all.
func TestStoreLimiterAcrossInstances(t *testing.T) {
	const quota = 5
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			st := s3Backend(t)
			kek := testKEK(t)
			mod := func(c *Config) {
				c.Quota = Quota{Documents: quota, Burst: 100}
				if shared {
					c.Limiter = NewStoreLimiter(st)
				}
			}
			a := openTestVault(t, st, kek, mod)
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
			want := 2 * quota // one quota per instance
			if shared {
				want = quota
			}
			if granted != want {
				t.Fatalf("granted %d distinct documents across two instances, want %d", granted, want)
			}
		})
	}
}

func TestSweepCollectsLimiterMarks(t *testing.T) {
	st := memstore.New()
	v := openTestVault(t, st, testKEK(t), func(c *Config) { c.Limiter = NewStoreLimiter(st) })
	info := putImage(t, v, image(100, ""), "m")
	grant(t, v, info.ID, "r")
	marks := func() (n int) {
		for _, k := range st.Keys() {
			if strings.HasPrefix(k, "limits/") {
				n++
			}
		}
		return n
	}
	if marks() == 0 {
		t.Fatal("no limiter marks after a grant")
	}
	v.Sweep(context.Background(), testActor)
	if marks() == 0 {
		t.Fatal("Sweep removed fresh marks")
	}
	v.clock.Advance(limiterMarkAge + time.Minute)
	if _, err := v.Sweep(context.Background(), testActor); err != nil {
		t.Fatal(err)
	}
	if n := marks(); n != 0 {
		t.Fatalf("%d stale marks left", n)
	}
}
