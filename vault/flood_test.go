package vault

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
		req, _ := http.NewRequest("GET", base+g.Token, nil)
		req.Header.Set("X-Test-Principal", "reviewer")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("honest GET: %d", resp.StatusCode)
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
				req, _ := http.NewRequest("GET", base+fmt.Sprintf("idv1_bogus%d-%d", c, i), nil)
				req.Header.Set("X-Test-Principal", "flooder")
				resp, err := client.Do(req)
				if err != nil {
					return true
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
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
