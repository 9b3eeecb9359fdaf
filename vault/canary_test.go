package vault

import (
	"context"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
)

// TestCanariesIndistinguishableInStorage: someone who can read the store
// (names, sizes, listing order, the order objects appear) tries rules to
// tell canaries from real documents; none does better than chance. Real
// documents arrive with sizes from a log-normal distribution while
// reviewers work; canaries arrive through MixCanaries as queues are listed.
func TestCanariesIndistinguishableInStorage(t *testing.T) {
	st := memstore.New()
	v := openTestVault(t, st, testKEK(t), func(c *Config) { c.CanaryRate = 3 })
	ctx := context.Background()
	var order []string // object IDs in the order their payloads appeared
	created := map[string]time.Time{}
	isCanary := map[string]bool{}
	var queue []string
	for len(isCanary) < 40 {
		v.clock.Advance(time.Duration(mrand.ExpFloat64() * float64(time.Minute)))
		if mrand.IntN(3) > 0 || len(queue) < 10 {
			size := int(math.Exp(9.9 + 0.35*mrand.NormFloat64())) // ~20 KB median
			info := putImage(t, v, image(size, ""), "m")
			order = append(order, info.ID)
			created[info.ID] = v.clock.Now()
			queue = append(queue, info.ID)
			continue
		}
		before := map[string]bool{}
		for _, id := range order {
			before[id] = true
		}
		mixed, err := v.MixCanaries(ctx, queue)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range mixed {
			if !slices.Contains(queue, id) && !isCanary[id] {
				isCanary[id] = true
				order = append(order, id)
				created[id] = v.clock.Now()
			}
		}
	}
	var real []string
	for _, id := range order {
		if !isCanary[id] {
			real = append(real, id)
		}
	}
	t.Logf("%d real documents, %d canaries", len(real), len(isCanary))
	size := func(key string) float64 {
		b, _ := st.Bytes(key)
		return float64(len(b))
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	listing := map[string]int{}
	i := 0
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, "blobs/") {
			listing[strings.TrimPrefix(k, "blobs/")] = i
			i++
		}
	}
	features := map[string]func(id string) float64{
		// The rule that flagged 8 of 8 canaries before: a payload exactly as
		// long as an older one.
		"payload length equals an older payload's": func(id string) float64 {
			for _, o := range order[:pos[id]] {
				if size("blobs/"+o) == size("blobs/"+id) {
					return 1
				}
			}
			return 0
		},
		"distance to the nearest older payload length": func(id string) float64 {
			best := math.Inf(1)
			for _, o := range order[:pos[id]] {
				best = min(best, math.Abs(size("blobs/"+o)-size("blobs/"+id)))
			}
			return best
		},
		"payload length":    func(id string) float64 { return size("blobs/" + id) },
		"key record length": func(id string) float64 { return size("keys/" + id) },
		"index entries": func(id string) float64 {
			n := 0
			for _, k := range st.Keys() {
				if strings.HasSuffix(k, "/"+id) && strings.HasPrefix(k, "index/") {
					n++
				}
			}
			return float64(n)
		},
		"listing position":  func(id string) float64 { return float64(listing[id]) },
		"creation position": func(id string) float64 { return float64(pos[id]) },
		"created right after another object": func(id string) float64 {
			if pos[id] == 0 {
				return 0
			}
			return float64(created[id].Sub(created[order[pos[id]-1]]))
		},
	}
	for name, f := range features {
		acc := bestThreshold(real, keysOf(isCanary), f)
		t.Logf("%-45s best single-threshold accuracy %.2f", name, acc)
		// Chance is 0.5; with 40 against 40+ samples the best of all
		// thresholds reaches about 0.6 by luck, rarely 0.75.
		if acc > 0.75 {
			t.Errorf("%s tells canaries from real documents with accuracy %.2f", name, acc)
		}
	}
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// bestThreshold is the accuracy of the best rule "feature >= x" or
// "feature < x" on a balanced sample of a and b.
func bestThreshold(a, b []string, f func(string) float64) float64 {
	n := min(len(a), len(b))
	a = slices.Clone(a)
	mrand.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
	a, b = a[:n], b[:n]
	type pt struct {
		x float64
		b bool
	}
	var pts []pt
	for _, id := range a {
		pts = append(pts, pt{f(id), false})
	}
	for _, id := range b {
		pts = append(pts, pt{f(id), true})
	}
	slices.SortFunc(pts, func(p, q pt) int {
		switch {
		case p.x < q.x:
			return -1
		case p.x > q.x:
			return 1
		}
		return 0
	})
	best := 0.5
	canBelow := 0 // canaries among pts[:i]
	for i := 0; i <= len(pts); i++ {
		if i > 0 && pts[i-1].b {
			canBelow++
		}
		if i > 0 && i < len(pts) && pts[i].x == pts[i-1].x {
			continue // cut only between distinct values
		}
		// rule "canary iff x >= cut": canaries above are right, real below are right
		acc := float64((n-canBelow)+(i-canBelow)) / float64(2*n)
		best = max(best, acc, 1-acc)
	}
	return best
}
