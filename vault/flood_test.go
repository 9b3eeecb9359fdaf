package vault

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// TestFloodLimiterCostBounded: 256 connections flood the real Handler on
// 127.0.0.1 with bogus tokens, unpaced (MaxRefusalRate < 0, so thousands
// of refusals a second reach the detector), while a reviewer does
// Grant+GET, with the default (store) limiter. The limiter and detector
// cost O(1) per refusal (a principal or address past its thresholds costs
// a cache lookup and no store write), so the flood's throughput does not
// decay over the run and the limiter's writes stay bounded however many
// refusals arrive. The honest latency under the default, paced handler is
// vault/faulttest's TestFaultFloodHonestLatency.
func TestFloodLimiterCostBounded(t *testing.T) {
	cs := &countingStore{Store: fsBackend(t)}
	// Alerts only: the reviewer's repeated grants of one document would
	// freeze it (bulk-access) before the measurement ends.
	v := openTestVault(t, cs, testKEK(t), func(c *Config) { c.Now = time.Now; c.Detection.AlertOnly = true })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.Handler(HandlerOptions{Principal: principalHeader, MaxRefusalRate: -1})}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/"
	var docs []string
	for i := range 40 {
		docs = append(docs, putImage(t, v, image(8<<10+i, ""), "m").ID)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}}
	honest := func() time.Duration {
		start := time.Now()
		g, err := v.Grant(context.Background(), docs[0], Access{Principal: "reviewer", Purpose: "p"})
		if err != nil {
			t.Fatal(err)
		}
		code, err := fetch(client, base+g.Token, "reviewer")
		if err != nil {
			t.Fatal(err)
		}
		if code != 200 {
			t.Fatalf("honest GET: %d", code)
		}
		return time.Since(start)
	}
	median := func(n int, gap time.Duration) time.Duration {
		var ds []time.Duration
		for range n {
			ds = append(ds, honest())
			time.Sleep(gap) // pacing a human, not synchronisation
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	idle := median(15, 20*time.Millisecond)
	writesBefore := cs.counts.Load()

	const conns, run, buckets = 256, 6 * time.Second, 3
	var done [buckets]atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			until(stop, func(i int) bool {
				if _, err := fetch(client, base+fmt.Sprintf("idv1_bogus%d-%d", c, i), "flooder"); err != nil {
					return true
				}
				if b := int(time.Since(start) / (run / buckets)); b < buckets {
					done[b].Add(1)
				}
				return true
			})
		})
	}
	time.Sleep(run / buckets / 2) // let the flood build up before measuring
	flooded := median(15, 100*time.Millisecond)
	for time.Since(start) < run*(buckets-1)/buckets {
		time.Sleep(20 * time.Millisecond)
	}
	lastFrom := cs.counts.Load() // the last third: the flood alone
	for time.Since(start) < run {
		time.Sleep(20 * time.Millisecond)
	}
	lastWrites := cs.counts.Load() - lastFrom
	close(stop)
	wg.Wait()
	var per [buckets]int64
	for i := range per {
		per[i] = done[i].Load()
	}
	t.Logf("reviewer Grant+GET p50: idle %v, under a %d-connection flood %v (%.1fx); flood throughput per %v: %v",
		idle, conns, flooded, float64(flooded)/float64(idle), run/buckets, per)
	if per[buckets-1] < per[0]*7/10 {
		t.Errorf("flood throughput decayed over the run: %v", per)
	}
	writes := cs.counts.Load() - writesBefore
	t.Logf("limiter writes: %d over the flood (%d refusals), %d in its last third (%d refusals)",
		writes, per[0]+per[1]+per[2], lastWrites, per[buckets-1])
	// Until its keys saturate, a flood costs writes (at most the
	// concurrency plus the thresholds, per key and hour); after, none.
	if lastWrites > 4 {
		t.Errorf("%d limiter writes for %d refusals once the flood's keys were past every threshold", lastWrites, per[buckets-1])
	}
}

// countingStore counts Puts of limiter counts.
type countingStore struct {
	store.Store
	counts atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if strings.HasPrefix(key, "counts/") {
		c.counts.Add(1)
	}
	return c.Store.Put(ctx, key, body, size, opts)
}

func TestPacerSpacing(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	far := t0.Add(time.Hour)
	const iv = 20 * time.Millisecond
	p := &pacer{burst: 3}
	// A burst of 3 goes at once, then one per interval, in arrival order.
	var got []time.Duration
	for range 6 {
		at, ok := p.reserve(t0, far, iv)
		if !ok {
			t.Fatal("no turn before a far deadline")
		}
		got = append(got, at.Sub(t0))
	}
	want := []time.Duration{0, 0, 0, iv, 2 * iv, 3 * iv}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("turns %v, want %v", got, want)
	}
	// A waiter whose turn would come after its deadline takes no turn: the
	// next one gets the turn it would have had.
	if at, ok := p.reserve(t0, t0.Add(iv), iv); ok || !at.Equal(t0.Add(iv)) {
		t.Fatalf("past its deadline: %v %v, want the deadline and no turn", at.Sub(t0), ok)
	}
	if at, _ := p.reserve(t0, far, iv); at.Sub(t0) != 4*iv {
		t.Fatalf("after a waiter gave up: %v, want %v", at.Sub(t0), 4*iv)
	}
	// A turn given back (a served request) goes to the next arrival.
	p.cancel(t0, iv)
	if at, _ := p.reserve(t0, far, iv); at.Sub(t0) != 4*iv {
		t.Fatalf("after a turn was given back: %v, want %v", at.Sub(t0), 4*iv)
	}
	// Idle time refills the burst, never beyond it.
	t1 := t0.Add(time.Minute)
	got = got[:0]
	p.cancel(t1, iv) // nothing queued: no credit beyond the burst
	for range 4 {
		at, _ := p.reserve(t1, far, iv)
		got = append(got, at.Sub(t1))
	}
	if want := []time.Duration{0, 0, 0, iv}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after idling: %v, want %v", got, want)
	}
}

// TestPacerConcurrent: however many callers reserve at once, turns are
// distinct and spaced (run with -race).
func TestPacerConcurrent(t *testing.T) {
	t0 := time.Now()
	p := &pacer{burst: 1}
	const n, iv = 200, time.Millisecond
	seen := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			at, _ := p.reserve(t0, t0.Add(time.Hour), iv)
			seen[i] = at.Sub(t0)
		})
	}
	wg.Wait()
	turns := map[time.Duration]bool{}
	for _, d := range seen {
		if d%iv != 0 || d < 0 || d >= n*iv || turns[d] {
			t.Fatalf("turn %v is off the grid or taken twice", d)
		}
		turns[d] = true
	}
}

// workStore counts the refusal work that reaches the store (the
// detector's tickets) and remembers when each began.
type workStore struct {
	store.Store
	mu     sync.Mutex
	starts []time.Time
}

func (w *workStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if strings.HasPrefix(key, "counts/") && strings.Contains(key, "/f1m/") {
		w.mu.Lock()
		w.starts = append(w.starts, time.Now())
		w.mu.Unlock()
	}
	return w.Store.Put(ctx, key, body, size, opts)
}

// TestForgedTokensWaitBeforeWork: tokens refused on their face arriving
// all at once are admitted to the detector, the store and the audit log at
// the refusal rate, not all together: the work a flood can make the vault
// do at any moment is bounded, not only its answers. Each request comes
// from a principal of its own, so no per-principal saturation hides the
// work. Forged tokens, and genuine ones past their expiry (an attacker's
// own old links, replayed at once).
func TestForgedTokensWaitBeforeWork(t *testing.T) {
	for _, kind := range []string{"forged", "expired"} {
		t.Run(kind, func(t *testing.T) { refusedOnFace(t, kind) })
	}
}

func refusedOnFace(t *testing.T, kind string) {
	ws := &workStore{Store: fsBackend(t)}
	v := openTestVault(t, ws, testKEK(t), nil)
	const rate, burst, n = 40, 4, 40
	toks := make([]string, n)
	for i := range toks {
		toks[i] = fmt.Sprintf("idv1_forged%d", i)
	}
	if kind == "expired" {
		doc := putImage(t, v, image(4<<10, ""), "m")
		for i := range toks {
			g, err := v.Grant(context.Background(), doc.ID, Access{Principal: fmt.Sprintf("prober-%d", i), Purpose: "p"})
			if err != nil {
				t.Fatal(err)
			}
			toks[i] = g.Token
		}
		v.clock.Advance(time.Hour) // past expiry and leeway
	}
	ws.mu.Lock()
	ws.starts = nil // the grants' own counts
	ws.mu.Unlock()
	srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, MaxRefusalRate: rate, RefusalBurst: burst}))
	defer srv.Close()
	start := time.Now()
	var wg sync.WaitGroup
	var not404 atomic.Int64
	for i := range n {
		wg.Go(func() {
			code, err := fetch(http.DefaultClient, srv.URL+"/"+toks[i], fmt.Sprintf("prober-%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			if code != 404 {
				not404.Add(1)
			}
		})
	}
	wg.Wait()
	if not404.Load() > 0 {
		t.Fatalf("%d %s tokens were not refused", not404.Load(), kind)
	}
	ws.mu.Lock()
	starts := ws.starts
	ws.mu.Unlock()
	// One minute-count ticket per refused principal (plus the shared
	// address's until it saturates): each is work begun for one request.
	if len(starts) < n {
		t.Fatalf("%d detector counts for %d %s tokens", len(starts), n, kind)
	}
	// In the first half second at most the burst and half a second's worth
	// of turns may have begun work (the address count doubles each).
	early := 0
	for _, s := range starts {
		if s.Sub(start) < 500*time.Millisecond {
			early++
		}
	}
	if limit := 2 * (burst + rate/2 + 1); early > limit {
		t.Errorf("%d detector writes began in the first 500 ms, the rate allows %d", early, limit)
	}
	if took := time.Since(start); took < time.Duration(n-burst)*time.Second/rate {
		t.Errorf("%d %s tokens answered in %v, faster than %d/s allows", n, kind, took, rate)
	}
	t.Logf("%d %s tokens: %d detector writes, %d of them in the first 500 ms; all answered after %v", n, kind, len(starts), early, time.Since(start).Round(time.Millisecond))
}
