package vault

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// smallBufListener shrinks the kernel's send buffer of accepted
// connections, so a slow client holds data in the server process rather
// than in socket buffers.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// slowReaderBound is the documented bound on the heap growth of 200
// redemption streams whose clients read at 10 KB/s: the process-wide
// read-ahead budget plus, per stream, one 64 KiB chunk, the 16 KiB
// authenticated head, the decryption segment and HTTP buffers (at most
// 256 KiB together; measured ~170 KiB).
const slowReaderBound = 32<<20 + 200*256<<10

// TestSlowReadersBounded (issue 17.3): 200 clients reading 1 MiB documents
// at 10 KB/s keep the server's heap growth under slowReaderBound (before:
// each stream read its whole document ahead, 200 MiB).
func TestSlowReadersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	v := openTestVault(t, fsBackend(t), testKEK(t), nil)
	info := putImage(t, v, image(1<<20, ""), "m")
	const readers = 200
	var toks []string
	for i := range readers {
		g, err := v.Grant(context.Background(), info.ID, Access{Principal: fmt.Sprintf("p%d", i/8), Purpose: "p"})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, g.Token)
	}
	srv := httptest.NewUnstartedServer(v.Handler(HandlerOptions{Principal: principalHeader}))
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxConnsPerHost: readers + 10, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(8 << 10)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var started, wg sync.WaitGroup
	started.Add(readers)
	for i, tok := range toks {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/"+tok, nil)
			req.Header.Set("X-Test-Principal", fmt.Sprintf("p%d", i/8))
			resp, err := client.Do(req)
			started.Done()
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
				return
			}
			buf := make([]byte, 1000)
			tick := time.NewTicker(100 * time.Millisecond) // 10 KB/s
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if _, err := io.ReadFull(resp.Body, buf); err != nil {
					return
				}
			}
		})
	}
	started.Wait()
	time.Sleep(2 * time.Second) // let read-ahead fill as far as it may
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	cancel()
	wg.Wait()
	growth := int64(during.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew %.1f MiB with %d slow readers (bound %.1f MiB)", float64(growth)/(1<<20), readers, float64(slowReaderBound)/(1<<20))
	if growth > slowReaderBound {
		t.Fatalf("heap grew %d bytes, over the bound %d", growth, slowReaderBound)
	}
}

// hangStore blocks every write under prefix until its context ends.
type hangStore struct {
	store.Store
	prefix string
	on     chan struct{} // closed: hang
	off    chan struct{} // closed: stop hanging (test cleanup)
}

func (h *hangStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	select {
	case <-h.on:
		if strings.HasPrefix(key, h.prefix) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-h.off:
			}
		}
	default:
	}
	return h.Store.Put(ctx, key, body, size, opts)
}

// TestHungAuditStoreBounded (issue 17.3): with the audit store hung, 500
// concurrent requests are all answered by their deadline; their refusal
// records wait in the background, at most maxLate of them (issue 24.1:
// they are written late rather than lost), and every goroutine is gone
// once the store answers again.
func TestHungAuditStoreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	hs := &hangStore{Store: fsBackend(t), prefix: "audit/", on: make(chan struct{}), off: make(chan struct{})}
	v := openTestVault(t, hs, testKEK(t), nil)
	var answers sync.Once
	answer := func() { answers.Do(func() { close(hs.off) }) }
	t.Cleanup(answer) // runs before Close's cleanup
	info := putImage(t, v, image(20<<10, ""), "m")
	g := grant(t, v, info.ID, "r")
	const timeout = 2 * time.Second
	// Measured on the server, from the handler's entry to its answer: the
	// client side adds the time 500 connections wait to be accepted.
	h := v.Handler(HandlerOptions{Principal: principalHeader, RequestTimeout: timeout})
	var mu sync.Mutex
	slowest := time.Duration(0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(start)
		mu.Lock()
		slowest = max(slowest, d)
		mu.Unlock()
	}))
	defer srv.Close()
	tr := &http.Transport{MaxConnsPerHost: 600, MaxIdleConnsPerHost: 600}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	baseline := runtime.NumGoroutine()
	close(hs.on)
	var wg sync.WaitGroup
	peak := 0
	for i := range 500 {
		wg.Go(func() {
			tok := g.Token[:len(g.Token)-4] + fmt.Sprintf("%04d", i) // forged: its refusal needs the audit log
			req, _ := http.NewRequest("GET", srv.URL+"/"+tok, nil)
			req.Header.Set("X-Test-Principal", "r")
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("status %d", resp.StatusCode)
			}
			mu.Lock()
			peak = max(peak, runtime.NumGoroutine())
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("slowest answer %v (deadline %v); peak goroutines %d (baseline %d)", slowest.Round(time.Millisecond), timeout, peak, baseline)
	// The margin covers scheduling 500 handlers on a 2-core machine under
	// -race.
	if slowest > timeout+time.Second {
		t.Errorf("an answer took %v, past its deadline %v", slowest, timeout)
	}
	tr.CloseIdleConnections()
	settle := func(limit int) int {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > limit && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		return runtime.NumGoroutine()
	}
	if n := settle(baseline + maxLate + 20); n > baseline+maxLate+20 {
		t.Errorf("%d goroutines remain after every request was answered (baseline %d, at most %d records in the background)", n, baseline, maxLate)
	}
	answer()
	if n := settle(baseline + 20); n > baseline+20 {
		t.Errorf("%d goroutines remain once the audit store answers again (baseline %d)", n, baseline)
	}
}

// TestStalledClientDisconnected: a client that stops reading is cut off
// after HandlerOptions.WriteTimeout, which frees its stream slot and
// read-ahead.
func TestStalledClientDisconnected(t *testing.T) {
	v := openTestVault(t, fsBackend(t), testKEK(t), nil)
	info := putImage(t, v, image(4<<20, ""), "m")
	g := grant(t, v, info.ID, "r")
	srv := httptest.NewUnstartedServer(v.Handler(HandlerOptions{Principal: principalHeader, WriteTimeout: 200 * time.Millisecond}))
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: x\r\nX-Test-Principal: r\r\n\r\n", g.Token)
	// Read nothing more; the server must give up on its own.
	open := func() int {
		v.streams.mu.Lock()
		defer v.streams.mu.Unlock()
		return len(v.streams.m)
	}
	waitFor := func(want int, within time.Duration) bool {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if open() == want {
				return true
			}
		}
		return false
	}
	if !waitFor(1, 5*time.Second) {
		t.Fatal("the stream never started")
	}
	if !waitFor(0, 5*time.Second) {
		t.Fatal("a stalled client still holds its stream 5 s later (WriteTimeout 200 ms)")
	}
}
