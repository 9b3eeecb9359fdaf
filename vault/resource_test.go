package vault

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/testenv"
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

// Slow readers' memory. The bound the package states (see readahead.go and
// Handler): the process-wide ReadAheadBudget, plus per stream one 4 KiB
// read-ahead chunk, the decryption segments (16 KiB of ciphertext and of
// plaintext, and Tink's working copy), the Handler's 8 KiB write buffer,
// the HTTP server's connection buffers and three goroutines' stacks: at
// most perStreamBound in all (measured: about 100 KiB).
const perStreamBound = 128 << 10

// slowClientEnv names the file that makes the test binary the client side
// of TestSlowReadersBounded (a child process: its memory is not the
// server's).
const slowClientEnv = "IDVAULT_SLOW_CLIENT"

// TestSlowReadersBounded (issues 17.3, 24.2): 1,000 clients, in a child
// process, read 1 MiB documents at 10 KB/s over connections whose send
// and receive buffers are small (so data waits in the server, not in the
// kernel). The server's heap and stacks grow by at most ReadAheadBudget +
// 1,000 × perStreamBound. Before: about 180 KiB per stream beyond the
// budget (1,000 readers took the server from 24 to 206-218 MiB): a 64 KiB
// chunk per stream outside the budget, the 16 KiB head kept for the whole
// stream, a 32 KiB write buffer.
func TestSlowReadersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections for a few seconds")
	}
	const readers = 1000
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) {
		c.Detection.Limiter, c.Detection.AllowLocalLimiter = NewMemoryLimiter(), true
	})
	info := putImage(t, v, image(1<<20, ""), "m")
	toks := make([]string, readers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range readers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := v.Grant(context.Background(), info.ID, Access{Principal: fmt.Sprintf("p%d", i/8), Purpose: "p"})
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = fmt.Sprintf("p%d %s", i/8, g.Token)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	srv := httptest.NewUnstartedServer(v.Handler(HandlerOptions{Principal: principalHeader}))
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	list := filepath.Join(t.TempDir(), "clients")
	if err := os.WriteFile(list, []byte(srv.Listener.Addr().String()+"\n"+strings.Join(toks, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	before := inUse()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), slowClientEnv+"="+list)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the client stops
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("the client process: %q, %v", line, err)
	}
	if open := v.streamsOpen(); open != readers/8 {
		t.Fatalf("%d principals have a stream open, want %d (every client streaming)", open, readers/8)
	}
	// Let read-ahead fill as far as it may: a condition to create (the
	// clients hold their streams open for minutes), not a result to wait for.
	time.Sleep(3 * time.Second)
	runtime.GC()
	during := inUse()
	growth := during - before
	bound := ReadAheadBudget + readers*perStreamBound
	t.Logf("heap and stacks grew %.1f MiB with %d slow readers: %.0f KiB per stream beyond the read-ahead budget (bound %.1f MiB; %d KiB per stream); RSS %s",
		float64(growth)/(1<<20), readers, float64(growth-ReadAheadBudget)/readers/1024, float64(bound)/(1<<20), perStreamBound>>10, rss())
	if growth > bound {
		t.Fatalf("heap and stacks grew %d bytes, over the bound %d", growth, bound)
	}
}

// inUse is the memory the Go runtime holds for the heap and for stacks.
func inUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// rss is the process's resident set, as Linux reports it ("?" elsewhere).
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "?"
}

// slowClients is the child process of TestSlowReadersBounded: it opens a
// connection per line of the list (small receive buffers), reads each
// response at 10 KB/s (1,000 bytes every 100 ms), 50 more once the last
// 50 have their first bytes, says "ready" once every one has, and stops
// when its standard input closes.
func slowClients(list string) int {
	b, err := os.ReadFile(list)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	addr := lines[0]
	var started sync.WaitGroup
	for i, l := range lines[1:] {
		if i%50 == 0 {
			// In waves, as slow readers pile up: 1,000 redemptions at
			// once on two cores under -race outrun the spend window.
			started.Wait()
		}
		principal, tok, _ := strings.Cut(l, " ")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.(*net.TCPConn).SetReadBuffer(8 << 10)
		fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: x\r\nX-Test-Principal: %s\r\n\r\n", tok, principal)
		started.Add(1)
		go func() {
			br := bufio.NewReaderSize(c, 1<<10)
			status, err := br.ReadString('\n')
			if err != nil || !strings.Contains(status, " 200 ") {
				fmt.Fprintf(os.Stderr, "slow client: %q %v\n", status, err)
				started.Done()
				return
			}
			buf := make([]byte, 1000)
			once := false
			for {
				if _, err := io.ReadFull(br, buf); err != nil {
					if !once {
						started.Done()
					}
					return
				}
				if !once {
					once = true
					started.Done()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	started.Wait()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
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
// concurrent requests are all answered by their deadline, and their
// goroutines are gone once they are.
func TestHungAuditStoreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	hs := &hangStore{Store: fsBackend(t), prefix: "audit/", on: make(chan struct{}), off: make(chan struct{})}
	v := openTestVault(t, hs, testKEK(t), nil)
	t.Cleanup(func() { close(hs.off) }) // runs before Close's cleanup
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
			code, err := fetch(client, srv.URL+"/"+tok, "r")
			if err != nil {
				t.Error(err)
				return
			}
			if code != 404 {
				t.Errorf("status %d", code)
			}
			mu.Lock()
			peak = max(peak, runtime.NumGoroutine())
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("slowest answer %v (deadline %v); peak goroutines %d (baseline %d)", slowest.Round(time.Millisecond), timeout, peak, baseline)
	// The margin covers scheduling 500 handlers on a 2-core machine under
	// -race, scaled by how much slower than its reference this machine runs
	// now (it failed once at 3.1 s at load 10).
	if slowest > timeout+testenv.Scale(time.Second) {
		t.Errorf("an answer took %v, past its deadline %v", slowest, timeout)
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline+20 {
		t.Errorf("%d goroutines remain after every request was answered (baseline %d)", n, baseline)
	}
}

// stallClient puts a document of size bytes, grants it, and asks for it
// from a Handler with opts (its Principal set) on a connection that reads
// nothing after the request, its buffers shrunk so the server's writes
// soon block.
func stallClient(t *testing.T, v *testVault, size int, opts HandlerOptions) {
	t.Helper()
	info := putImage(t, v, image(size, ""), "m")
	g := grant(t, v, info.ID, "r")
	opts.Principal = principalHeader
	srv := httptest.NewUnstartedServer(v.Handler(opts))
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: x\r\nX-Test-Principal: r\r\n\r\n", g.Token)
}

// TestStalledClientDisconnected: a client that stops reading is cut off
// after HandlerOptions.WriteTimeout, which frees its stream slot and
// read-ahead.
func TestStalledClientDisconnected(t *testing.T) {
	v := openTestVault(t, fsBackend(t), testKEK(t), nil)
	stallClient(t, v, 4<<20, HandlerOptions{WriteTimeout: 200 * time.Millisecond})
	// Read nothing more; the server must give up on its own.
	waitFor := func(want int, within time.Duration) bool {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if v.streamsOpen() == want {
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

// withReadAheadBudget replaces the process-wide read-ahead budget for the
// test (tests of this package do not run in parallel).
func withReadAheadBudget(t *testing.T, bytes int64) {
	t.Helper()
	budgetOnce.Do(func() {})
	old := budget
	budget = make(chan struct{}, max(bytes/readAheadChunk, 1))
	t.Cleanup(func() { budget = old })
}

// rateReader reads an HTTP response from a raw connection at rate bytes a
// second (in 10 ms steps, with the kernel's default buffers), so that the
// server sees a client exactly as slow as that.
type rateReader struct {
	conn    net.Conn
	br      *bufio.Reader
	rate    int
	started time.Time // first body byte
}

// dialRate connects to addr and asks for path; rcvbuf, if positive, fixes
// the client's socket receive buffer.
func dialRate(t testing.TB, addr, path, principal string, rate, rcvbuf int) (*rateReader, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if rcvbuf > 0 {
		c.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nX-Test-Principal: %s\r\nConnection: close\r\n\r\n", path, principal)
	return &rateReader{conn: c, br: bufio.NewReaderSize(c, 4<<10), rate: rate}, nil
}

// readAll reads the status line, headers and body; it returns the status,
// the body's length and the error that ended it (nil at a clean end).
func (r *rateReader) readAll() (status string, n int64, err error) {
	defer r.conn.Close()
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var one [1]byte
	if m, err := resp.Body.Read(one[:]); m == 1 {
		r.started = time.Now()
		n = 1
	} else if err != nil {
		return resp.Status, 0, err
	}
	buf := make([]byte, min(max(r.rate/100, 1), 1<<20))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := io.ReadFull(resp.Body, buf)
		n += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if resp.ContentLength >= 0 && n != resp.ContentLength {
				return resp.Status, n, fmt.Errorf("cut after %d of %d bytes", n, resp.ContentLength)
			}
			return resp.Status, n, nil
		}
		if err != nil {
			return resp.Status, n, err
		}
		if r.rate < 1<<30 {
			<-tick.C
		}
	}
}

// bigBufListener gives accepted connections a fixed send buffer of 1 MiB
// (512 KiB, doubled by the kernel), as a server on a real network has
// (autotuned up to 4 MiB): a write that finds it full waits until a third
// of it has drained.
type bigBufListener struct{ net.Listener }

func (l bigBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(512 << 10)
	}
	return c, err
}

// TestHandlerMinimumRateReaderNotCut (issue 24.2): a client that reads at
// 1.5 times the documented minimum rate (32 KiB per WriteTimeout; 50 ms
// here, so 640 KiB/s), behind a 1 MiB send buffer, for longer than
// RequestTimeout (2 s here), gets the whole 6 MiB document. Before: the
// write deadline was set per 32 KiB write, and a write that finds the send
// buffer full waits until a third of it has drained, so such a reader was
// cut (at the defaults, a 10 KB/s reader after about 10 s); and the stream
// read its payload under the RequestTimeout deadline, which cut a stream
// that outlived it.
func TestHandlerMinimumRateReaderNotCut(t *testing.T) {
	if testing.Short() {
		t.Skip("about 7 s of wall time")
	}
	const writeTimeout = 50 * time.Millisecond
	minRate := int((32 << 10) * time.Second / writeTimeout) // 640 KiB/s
	v := openTestVault(t, fsBackend(t), testKEK(t), nil)
	doc := image(6<<20, "")
	info := putImage(t, v, doc, "m")
	g := grant(t, v, info.ID, "r")
	srv := httptest.NewUnstartedServer(v.Handler(HandlerOptions{Principal: principalHeader, WriteTimeout: writeTimeout, RequestTimeout: 2 * time.Second}))
	srv.Listener = bigBufListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	rr, err := dialRate(t, srv.Listener.Addr().String(), "/"+g.Token, "r", minRate*3/2, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	status, n, err := rr.readAll()
	t.Logf("%s: %d of %d bytes in %v at %d KiB/s (minimum %d KiB/s): %v", status, n, len(doc), time.Since(start).Round(time.Millisecond), minRate*3/2>>10, minRate>>10, err)
	if err != nil || n != int64(len(doc)) {
		t.Fatalf("a reader at 1.5 times the minimum rate was cut after %d of %d bytes (%v): %v", n, len(doc), time.Since(start).Round(time.Millisecond), err)
	}
}

// TestHandlerStalledClientCut: a client that reads the head and then
// stops is cut once its average rate since the first byte falls below the
// minimum, and its stream and read-ahead are freed.
func TestHandlerStalledClientCut(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	v := openTestVault(t, fsBackend(t), testKEK(t), nil)
	var mu sync.Mutex
	var cut error
	stallClient(t, v, 8<<20, HandlerOptions{WriteTimeout: writeTimeout,
		OnError: func(_ *http.Request, err error) { mu.Lock(); cut = err; mu.Unlock() }})
	start := time.Now()
	for end := start.Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		done := cut != nil
		mu.Unlock()
		if done && v.streamsOpen() == 0 {
			t.Logf("cut after %v: %v", time.Since(start).Round(time.Millisecond), cut)
			return
		}
	}
	t.Fatal("a stalled client still holds its stream 10 s later (WriteTimeout 100 ms)")
}

func (v *Vault) streamsOpen() int {
	v.streams.mu.Lock()
	defer v.streams.mu.Unlock()
	return len(v.streams.m)
}

// TestSlowReadersDoNotDelayOthers (issue 24.2): with 20 clients reading
// 1 MiB documents at 10 KB/s and a read-ahead budget they exhaust (1 MiB,
// scaled down from the default 32 MiB for 20 streams of 4 MiB), 20 other
// redemptions of 1 MiB, one after the other, get their first byte and
// their last within 0.5 s of what they took before the slow readers came.
// Before: a stream waiting for the shared budget did not look again once
// its own chunks were consumed, so it advanced only as fast as the slow
// readers freed budget: seconds per redemption.
func TestSlowReadersDoNotDelayOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	withReadAheadBudget(t, 1<<20)
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) {
		c.Detection.Limiter, c.Detection.AllowLocalLimiter = NewMemoryLimiter(), true
		c.Detection.AlertOnly = true // one principal redeems one document 40 times: latency, not alerts, is measured
	})
	info := putImage(t, v, image(1<<20, ""), "m")
	srv := httptest.NewUnstartedServer(v.Handler(HandlerOptions{Principal: principalHeader}))
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// measure redeems 1 MiB 20 times, one after the other, as "honest".
	measure := func() (first, last []time.Duration) {
		for range 20 {
			g := grant(t, v, info.ID, "honest")
			start := time.Now()
			rr, err := dialRate(t, addr, "/"+g.Token, "honest", 1<<30, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, n, err := rr.readAll()
			if err != nil || n != info.Size {
				t.Fatalf("honest redemption: %d of %d bytes: %v", n, info.Size, err)
			}
			first = append(first, rr.started.Sub(start))
			last = append(last, time.Since(start))
		}
		slices.Sort(first)
		slices.Sort(last)
		return first, last
	}
	idleFirst, idleLast := measure()

	var wg sync.WaitGroup
	slow := make(chan *rateReader, 20)
	for i := range 20 {
		principal := fmt.Sprintf("slow-%d", i)
		g := grant(t, v, info.ID, principal)
		rr, err := dialRate(t, addr, "/"+g.Token, principal, 10_000, 8<<10)
		if err != nil {
			t.Fatal(err)
		}
		slow <- rr
		wg.Go(func() { rr.readAll() })
	}
	close(slow)
	defer func() {
		for rr := range slow {
			rr.conn.Close()
		}
		wg.Wait()
	}()
	time.Sleep(time.Second) // the slow readers take the budget (a condition to create, not a result to wait for)
	busyFirst, busyLast := measure()
	p99 := func(d []time.Duration) time.Duration { return d[len(d)-1] }
	t.Logf("first byte p99: idle %v, with 20 slow readers %v; whole 1 MiB p99: idle %v, with them %v",
		p99(idleFirst).Round(time.Millisecond), p99(busyFirst).Round(time.Millisecond), p99(idleLast).Round(time.Millisecond), p99(busyLast).Round(time.Millisecond))
	const bound = 500 * time.Millisecond
	if p99(busyFirst) > p99(idleFirst)+bound || p99(busyLast) > p99(idleLast)+bound {
		t.Fatalf("20 slow readers delayed other redemptions by more than %v at the 99th percentile", bound)
	}
}

// stallStore serves the first 64 KiB of every payload, then delivers
// nothing until the reader is closed (a store that stopped answering
// mid-stream, its connection still open).
type stallStore struct{ store.Store }

func (s stallStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil || !strings.HasPrefix(key, "blobs/") {
		return rc, err
	}
	closed := make(chan struct{})
	var once sync.Once
	return readCloser{&cutReader{r: rc, left: 64 << 10, err: errors.New("stall reader: closed"), wait: closed}, func() error {
		once.Do(func() { close(closed) })
		return rc.Close()
	}}, nil
}

// TestStreamStallBounded: a store that stops delivering a payload in the
// middle of a stream, without closing it, ends the stream with an error
// matching ErrStoreUnavailable (not ErrTampered) after streamStall, for a
// reader from Redeem and from the Handler (whose stream RequestTimeout no
// longer bounds).
func TestStreamStallBounded(t *testing.T) {
	defer func(d time.Duration) { streamStall = d }(streamStall)
	streamStall = 300 * time.Millisecond
	v := openTestVault(t, stallStore{fsBackend(t)}, testKEK(t), nil)
	info := putImage(t, v, image(1<<20, ""), "m")
	g := grant(t, v, info.ID, "r")
	start := time.Now()
	got, err := redeemAll(v, g.Token, "r")
	t.Logf("Redeem's reader: %d bytes, then after %v: %v", len(got), time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrStoreUnavailable) || errors.Is(err, ErrTampered) || time.Since(start) > 10*time.Second {
		t.Fatalf("a stalled payload stream: %v after %v; want ErrStoreUnavailable within about %v", err, time.Since(start), streamStall)
	}
	g = grant(t, v, info.ID, "r")
	var mu sync.Mutex
	var cut error
	srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, OnError: func(_ *http.Request, err error) {
		mu.Lock()
		cut = err
		mu.Unlock()
	}}))
	defer srv.Close()
	rr, err := dialRate(t, srv.Listener.Addr().String(), "/"+g.Token, "r", 1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := rr.readAll()
	mu.Lock()
	defer mu.Unlock()
	if err == nil || n >= info.Size || !errors.Is(cut, ErrStoreUnavailable) {
		t.Fatalf("Handler over a stalled store: %d of %d bytes, %v; the handler saw %v; want a broken transfer and ErrStoreUnavailable", n, info.Size, err, cut)
	}
}
