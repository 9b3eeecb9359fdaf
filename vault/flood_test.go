package vault

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFloodDoesNotStarveHonest: 256 connections flood the real Handler on
// 127.0.0.1 with bogus tokens while a reviewer does Grant+GET. The
// limiter and detector cost O(1) per refusal (a refused principal or
// address past its thresholds costs a cache lookup, no store write), so
// the reviewer's median stays within 3x of idle and the flood's
// throughput does not decay over the run.
func TestFloodDoesNotStarveHonest(t *testing.T) {
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) { c.Now = time.Now })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.Handler(HandlerOptions{Principal: principalHeader})}
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

	const conns, run, buckets = 256, 6 * time.Second, 3
	var done [buckets]atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+fmt.Sprintf("idv1_bogus%d-%d", c, i), nil)
				req.Header.Set("X-Test-Principal", "flooder")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if b := int(time.Since(start) / (run / buckets)); b < buckets {
					done[b].Add(1)
				}
			}
		})
	}
	time.Sleep(run / buckets / 2) // let the flood build up before measuring
	flooded := median(15, 100*time.Millisecond)
	for time.Since(start) < run {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	var per [buckets]int64
	for i := range per {
		per[i] = done[i].Load()
	}
	t.Logf("reviewer Grant+GET p50: idle %v, under a %d-connection flood %v (%.1fx); flood throughput per %v: %v",
		idle, conns, flooded, float64(flooded)/float64(idle), run/buckets, per)
	if flooded > 3*idle+2*time.Millisecond {
		t.Errorf("the reviewer's p50 went from %v to %v under the flood (over 3x)", idle, flooded)
	}
	if per[buckets-1] < per[0]*7/10 {
		t.Errorf("flood throughput decayed over the run: %v", per)
	}
}
