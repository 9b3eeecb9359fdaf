package faulttest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

// floodPrincipal authenticates by header; "anonymous" is refused, as a
// session check would refuse a request without a session.
func floodPrincipal(r *http.Request) (string, error) {
	p := r.Header.Get("X-Principal")
	if p == "" || p == "anonymous" {
		return "", errors.New("no session")
	}
	return p, nil
}

// TestFaultFloodHonestLatency: 256 connections flood the default Handler
// on 127.0.0.1 the ways an attacker who has read the code would: bogus
// tokens under one principal, bogus tokens each under a principal of its
// own (spread under every per-identity threshold), unauthenticated
// requests, malformed paths and other methods. Meanwhile a reviewer does
// Grant+GET at a human pace. Checked: the reviewer's median stays within
// 3x of idle (times the measured slowdown on a busy machine; idle is
// measured before and after the flood), the flood's answers per interval do not decay over the run
// and never exceed the handler's refusal rate (which is what bounds the
// flood's CPU, audit records and detector work), and an honest refusal
// in the middle of the flood is answered in its turn, long before its
// deadline. With MaxRefusalRate < 0 (an unpaced handler, as before) the
// reviewer's median is 5-11x idle under -race on a 2-core machine.
func TestFaultFloodHonestLatency(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { floodHonest(t, b.new(t)) })
	}
}

func floodHonest(t *testing.T, st store.Store) {
	// The honest reviewer redeems one of 8 documents again and again:
	// latency under a flood is measured, not its alerts.
	v, _ := openVault(t, st, kektest.New(t), func(c *vault.Config) { c.Detection.AlertOnly = true })
	const rate, burst = 50, 10 // the Handler's defaults
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.Handler(vault.HandlerOptions{Principal: floodPrincipal})}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/"
	var docs []string
	for range 8 {
		docs = append(docs, put(t, v, time.Hour).ID)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}}
	defer client.CloseIdleConnections()
	get := func(tok, principal string) (int, error) {
		req, _ := http.NewRequest("GET", base+tok, nil)
		req.Header.Set("X-Principal", principal)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	n := 0
	honest := func() time.Duration {
		start := time.Now()
		g, err := v.Grant(context.Background(), docs[n%len(docs)], vault.Access{Principal: "reviewer", Purpose: "age check"})
		n++
		if err != nil {
			t.Fatal(err)
		}
		if code, err := get(g.Token, "reviewer"); code != 200 || err != nil {
			t.Fatalf("honest GET: %d %v", code, err)
		}
		return time.Since(start)
	}
	samples := func(n int, gap time.Duration) []time.Duration {
		var ds []time.Duration
		for range n {
			ds = append(ds, honest())
			time.Sleep(gap) // a human's pace, not synchronisation
		}
		return ds
	}
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	samples(3, 0) // warm up connections and caches
	// Idle is measured before and after the flood (A-B-A), so that a
	// machine whose load drifts meanwhile moves the baseline as it moves
	// the flooded samples. The rates and deadlines below scale with the
	// machine's measured speed (testenv.Slowdown), bounded.
	idleBefore := samples(8, 20*time.Millisecond)
	slow := testenv.Slowdown()

	const conns, run, buckets = 256, 6 * time.Second, 3
	var answered [buckets]atomic.Int64
	var non404 atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			testenv.Until(stop, func(i int) bool {
				method, path, principal := "GET", fmt.Sprintf("idv1_bogus%d-%d", c, i), "flooder"
				switch c % 8 {
				case 1, 2, 3: // each connection its own identity
					principal = fmt.Sprintf("flooder-%d", c)
				case 4:
					principal = "anonymous"
				case 5:
					path = "a/b/c"
				case 6:
					method = "POST"
				}
				req, _ := http.NewRequest(method, base+path, nil)
				req.Header.Set("X-Principal", principal)
				resp, err := client.Do(req)
				if err != nil {
					return true
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 404 && resp.StatusCode != 405 {
					non404.Add(1)
				}
				if b := int(time.Since(start) / (run / buckets)); b < buckets {
					answered[b].Add(1)
				}
				return true
			})
		})
	}
	time.Sleep(run / buckets / 2) // let the flood build up before measuring
	flooded := median(samples(15, 100*time.Millisecond))

	// An honest refusal (a link opened twice) waits its turn among the
	// flood's and is answered well before its deadline.
	g, err := v.Grant(context.Background(), docs[0], vault.Access{Principal: "reviewer", Purpose: "age check"})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get(g.Token, "reviewer"); code != 200 || err != nil {
		t.Fatalf("honest GET: %d %v", code, err)
	}
	rs := time.Now()
	code, err := get(g.Token, "reviewer")
	replay := time.Since(rs)
	if code != 404 || err != nil {
		t.Errorf("honest replay under the flood: %d %v, want 404", code, err)
	}
	// Its turn: the flood's connections ahead of it at the rate, plus slack.
	if limit := time.Duration(conns+burst)*time.Second/rate + testenv.Scale(2*time.Second); replay > limit {
		t.Errorf("honest replay answered after %v under the flood, limit %v", replay, limit)
	}

	for time.Since(start) < run {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	idle := median(append(idleBefore, samples(8, 20*time.Millisecond)...))
	var per [buckets]int64
	for i := range per {
		per[i] = answered[i].Load()
	}
	t.Logf("reviewer Grant+GET p50: idle %v, under a %d-connection flood %v (%.1fx); flood answers per %v: %v; honest replay answered in %v; slowdown %.1f",
		idle.Round(time.Microsecond), conns, flooded.Round(time.Microsecond), float64(flooded)/float64(idle), run/buckets, per, replay.Round(time.Millisecond), slow)
	// The flood's work per second is bounded (the pacer); what it costs the
	// reviewer grows as the machine gets slower, so the bound is 3x on the
	// reference machine and 3x the measured slowdown on a busy one (an
	// unpaced handler is 5-11x idle on the reference machine).
	if limit := 3 * slow; float64(flooded) > limit*float64(idle) {
		t.Errorf("reviewer p50 under the flood is %.1fx idle (%v vs %v), want at most %.1fx (3x, slowdown %.1f)", float64(flooded)/float64(idle), flooded, idle, limit, slow)
	}
	if non404.Load() != 0 {
		t.Errorf("%d flood requests got something other than 404/405", non404.Load())
	}
	if per[buckets-1] < per[0]*7/10 {
		t.Errorf("flood answers decayed over the run: %v", per)
	}
	// The pacer admits at most rate per second after a burst (an answer
	// may fall in the interval after its turn, so the bound is on the run).
	if total, limit := per[0]+per[1]+per[2], int64(rate*run.Seconds())+burst+5; total > limit {
		t.Errorf("the flood got %d answers in %v, more than the rate allows (%d)", total, run, limit)
	}
	// Paced, not starved: at least half the rate, or half what a machine
	// this much slower than the reference can answer.
	if want := int64(rate * (run / buckets).Seconds() / 2 / slow); per[buckets-1] < want {
		t.Errorf("the flood was answered at %d per %v, below %d (half the refusal rate %d/s, slowdown %.1f): refusals are starved, not paced", per[buckets-1], run/buckets, want, rate, slow)
	}
}
