package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/store"
)

// hookStore wraps a memstore with a hook run before each Put.
type hookStore struct {
	*memstore.Store
	mu      sync.Mutex
	puts    int
	onPut   func(n int, key string, opts store.PutOptions) error // nil error: write
	onBody  func(n int, body []byte)                             // sees each body first
	afterOK func(n int, key string) error                        // error after a successful write: an ambiguous failure
}

func (h *hookStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if strings.HasPrefix(key, leasePrefix) || strings.HasPrefix(key, registryPrefix) {
		// Hooks are about batches and checkpoints.
		return h.Store.Put(ctx, key, body, size, opts)
	}
	h.mu.Lock()
	h.puts++
	n, on, after, onBody := h.puts, h.onPut, h.afterOK, h.onBody
	h.mu.Unlock()
	if onBody != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		onBody(n, b)
		body = bytes.NewReader(b)
	}
	if on != nil {
		if err := on(n, key, opts); err != nil {
			return err
		}
	}
	if err := h.Store.Put(ctx, key, body, size, opts); err != nil {
		return err
	}
	if after != nil {
		return after(n, key)
	}
	return nil
}

func (h *hookStore) set(on func(int, string, store.PutOptions) error, after func(int, string) error) {
	h.mu.Lock()
	h.onPut, h.afterOK = on, after
	h.mu.Unlock()
}

func batchCount(st *memstore.Store) (batches int) {
	for _, k := range st.Keys() {
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if _, ok := parseSeqName(k[i+1:]); ok && !strings.Contains(k, "checkpoints/") {
				batches++
			}
		}
	}
	return batches
}

func TestGroupCommit(t *testing.T) {
	skey, vkey := keys(t)
	const writers, each = 64, 40
	mem := newTestStore()
	var a *Appender
	// The first batch write waits until every other writer's first record
	// is queued, so the next batch provably carries several records.
	hs := &hookStore{Store: mem}
	hs.onBody = func(n int, body []byte) {
		if n == 1 {
			recs, err := parseBatch(body)
			if err != nil {
				panic(err)
			}
			for len(a.reqs) < writers-len(recs) {
				runtime.Gosched()
			}
		}
	}
	a = mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now})
	var wg sync.WaitGroup
	seqs := make([][]int64, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r, err := a.Append(context.Background(), Record{Event: EventRedeem, Outcome: OutcomeOK, Principal: fmt.Sprintf("w%d", w), Detail: fmt.Sprint(i)})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Log != a.LogID() || r.Principal != fmt.Sprintf("w%d", w) {
					t.Errorf("returned record %+v", r)
				}
				seqs[w] = append(seqs[w], r.Seq)
			}
		})
	}
	wg.Wait()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, writers*each)
	for w := range seqs {
		for i, s := range seqs[w] {
			if s < 0 || s >= int64(len(seen)) || seen[s] {
				t.Fatalf("seq %d out of range or repeated", s)
			}
			if i > 0 && s <= seqs[w][i-1] {
				t.Fatal("one writer's seqs are not increasing")
			}
			seen[s] = true
		}
	}
	rep := verifyOK(t, mem, vkey, VerifyOptions{})
	if l := rep.Logs[0]; l.Records != writers*each || !l.Final {
		t.Fatalf("report %+v", l)
	}
	b := batchCount(mem)
	if b >= writers*each || b < 2 {
		t.Fatalf("%d batch objects for %d records: no group commit", b, writers*each)
	}
	t.Logf("%d records in %d batch objects", writers*each, b)
}

func TestFailClosed(t *testing.T) {
	skey, vkey := keys(t)
	down := errors.New("store down")
	for _, ambiguous := range []bool{false, true} {
		t.Run(fmt.Sprintf("ambiguous=%v", ambiguous), func(t *testing.T) {
			mem := newTestStore()
			hs := &hookStore{Store: mem}
			a := mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now})
			ctx := context.Background()
			for i := range 5 {
				if _, err := a.Append(ctx, sampleRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			first := a.LogID()
			// The store fails from now on (after writing, when ambiguous).
			if ambiguous {
				hs.set(nil, func(int, string) error { return down })
			} else {
				hs.set(func(int, string, store.PutOptions) error { return down }, nil)
			}
			for i := range 3 {
				_, err := a.Append(ctx, sampleRecord(5+i))
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, down) {
					t.Fatalf("Append on a failing store: %v, want ErrUnavailable", err)
				}
			}
			// The abandoned log is owed a checkpoint of its 5 durable records.
			if err := a.Checkpoint(ctx); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Checkpoint on a failing store: %v", err)
			}
			hs.set(nil, nil) // recovered
			var last Record
			for i := range 4 {
				r, err := a.Append(ctx, sampleRecord(10+i))
				if err != nil {
					t.Fatalf("Append after recovery: %v", err)
				}
				last = r
			}
			if a.LogID() == first || last.Log != a.LogID() {
				t.Fatal("appender did not move to a fresh log after a failed write")
			}
			// The new log starts with a record naming the old one.
			var recs []Record
			for r, err := range Scan(ctx, mem, Filter{Log: a.LogID()}) {
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
			// (After an ambiguous failure, the failed write to the fresh log
			// landed: the appender found it there and continued after it,
			// so the chain back to the first log has one more link.)
			if len(recs) != 5 || recs[0].Event != EventOpen || !ambiguous && recs[0].Detail != "log "+first+" size 5" || last.Seq != 4 {
				t.Fatalf("new log: %d records, first %+v", len(recs), recs[0])
			}
			if err := a.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rep := verifyOK(t, mem, vkey, VerifyOptions{})
			byLog := map[string]LogReport{}
			for _, l := range rep.Logs {
				byLog[l.Log] = l
			}
			hops := 0
			for l := a.LogID(); l != first; l = byLog[l].Continues {
				if hops++; hops > 3 || byLog[l].Continues == "" {
					t.Fatalf("log %s does not lead back to %s", a.LogID(), first)
				}
			}
			for _, l := range rep.Logs {
				switch l.Log {
				case first:
					// Verified up to its durable size; an ambiguous failure's
					// records, if they landed, are an unsealed tail.
					if l.Verified.N != 5 || l.Final {
						t.Fatalf("old log %+v", l)
					}
				case a.LogID():
					if !l.Final || ambiguous == (l.Continues == first) || !ambiguous && l.ContinuesSize != 5 {
						t.Fatalf("new log %+v", l)
					}
				default:
					// The link in between: the fresh log whose first batch
					// landed ambiguously, continued, then abandoned.
					if !ambiguous || l.Continues != first || l.Verified.N == 0 {
						t.Fatalf("unexpected log %+v", l)
					}
				}
			}
			// No (log, seq) ever holds two different records: every batch
			// was created with IfAbsent.
		})
	}
}

func TestFailAfterNPuts(t *testing.T) {
	skey, vkey := keys(t)
	mem := newTestStore()
	var fail atomic.Bool
	hs := &hookStore{Store: mem}
	hs.set(func(n int, _ string, _ store.PutOptions) error {
		if fail.Load() || n > 3 && n <= 6 {
			return errors.New("injected")
		}
		return nil
	}, nil)
	a := mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now})
	ok, failed := 0, 0
	for i := range 20 {
		_, err := a.Append(context.Background(), sampleRecord(i))
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrUnavailable):
			failed++
		default:
			t.Fatal(err)
		}
	}
	if ok != 17 || failed != 3 {
		t.Fatalf("%d ok, %d failed", ok, failed)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, mem, vkey, VerifyOptions{})
}

func TestRetention(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	t.Run("supported", func(t *testing.T) {
		mem := newTestStore()
		c := newClock()
		mem.Now = c.Now
		a := mustAppender(t, mem, skey, AppenderOptions{Now: c.Now, RetainFor: 24 * time.Hour})
		if _, err := a.Append(ctx, sampleRecord(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.WriteOnce() {
			t.Fatal("WriteOnce false on a store with retention")
		}
		for _, k := range mem.Keys() {
			if strings.HasPrefix(k, leasePrefix) {
				continue // leases are renewed and released: never write-once
			}
			if err := mem.Delete(ctx, k); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("Delete %s: %v, want ErrRetained", k, err)
			}
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		mem := newTestStore()
		hs := &hookStore{Store: mem}
		hs.set(func(_ int, _ string, o store.PutOptions) error {
			if !o.RetainUntil.IsZero() {
				return fmt.Errorf("no object lock: %w", store.ErrRetentionUnsupported)
			}
			return nil
		}, nil)
		a := mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now, RetainFor: time.Hour})
		if !a.WriteOnce() {
			t.Fatal("WriteOnce false before the store refused")
		}
		first := a.LogID()
		for i := range 3 {
			if _, err := a.Append(ctx, sampleRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if a.WriteOnce() || a.LogID() != first {
			t.Fatal("WriteOnce still true, or the log changed, after ErrRetentionUnsupported")
		}
		verifyOK(t, mem, vkey, VerifyOptions{})
	})
	t.Run("none", func(t *testing.T) {
		a := mustAppender(t, newTestStore(), skey, AppenderOptions{})
		if a.WriteOnce() {
			t.Fatal("WriteOnce without RetainFor")
		}
	})
}

func TestAppendCancel(t *testing.T) {
	skey, vkey := keys(t)
	mem := newTestStore()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hs := &hookStore{Store: mem}
	hs.set(func(n int, _ string, _ store.PutOptions) error {
		if n == 1 {
			entered <- struct{}{}
			<-release
		}
		return nil
	}, nil)
	a := mustAppender(t, hs, skey, AppenderOptions{Now: newClock().Now})
	// Writer 1 holds the batch write; writer 2 queues and then gives up.
	done1 := make(chan error, 1)
	go func() {
		_, err := a.Append(context.Background(), sampleRecord(0))
		done1 <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() {
		_, err := a.Append(ctx, sampleRecord(1))
		done2 <- err
	}()
	for len(a.reqs) == 0 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done2; !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Append: %v", err)
	}
	close(release)
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The cancelled record was still queued when its batch formed, so it
	// was dropped; either way the log verifies.
	if l := verifyOK(t, mem, vkey, VerifyOptions{}).Logs[0]; l.Records != 1 {
		t.Fatalf("records %d", l.Records)
	}
}

func TestAppenderClose(t *testing.T) {
	skey, vkey := keys(t)
	mem := newTestStore()
	a := mustAppender(t, mem, skey, AppenderOptions{Now: newClock().Now})
	ctx := context.Background()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				_, err := a.Append(ctx, sampleRecord(w*50+i))
				if err == nil {
					ok.Add(1)
					continue
				}
				if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
					t.Errorf("Append during Close: %v", err)
				}
				return
			}
		})
	}
	for a.LogID() == "" || batchCount(mem) < 3 {
		runtime.Gosched()
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Append(ctx, sampleRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := a.Checkpoint(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkpoint after Close: %v", err)
	}
	l := verifyOK(t, mem, vkey, VerifyOptions{}).Logs[0]
	if !l.Final || l.Records != ok.Load() {
		t.Fatalf("report %+v; %d appends succeeded", l, ok.Load())
	}
	t.Run("empty log", func(t *testing.T) {
		mem := newTestStore()
		a := mustAppender(t, mem, skey, AppenderOptions{})
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if len(mem.Keys()) != 0 {
			t.Fatal("an appender that wrote nothing left objects")
		}
	})
	t.Run("final after a periodic checkpoint of the same size", func(t *testing.T) {
		mem := newTestStore()
		a := mustAppender(t, mem, skey, AppenderOptions{Now: newClock().Now})
		if _, err := a.Append(ctx, sampleRecord(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if l := verifyOK(t, mem, vkey, VerifyOptions{}).Logs[0]; !l.Final || l.Checkpoints != 2 {
			t.Fatalf("report %+v", l)
		}
	})
}

func TestBackgroundCheckpoints(t *testing.T) {
	skey, vkey := keys(t)
	mem := newTestStore()
	a := mustAppender(t, mem, skey, AppenderOptions{Now: newClock().Now, CheckpointRecords: 10})
	for round := 1; round <= 3; round++ {
		for i := range 10 {
			if _, err := a.Append(context.Background(), sampleRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		// Every 10 records a checkpoint follows, without any call.
		deadline := time.Now().Add(10 * time.Second)
		for len(checkpointKeys(mem, a.LogID())) < round {
			if time.Now().After(deadline) {
				t.Fatalf("no background checkpoint after %d records with CheckpointRecords 10", round*10)
			}
			runtime.Gosched()
		}
	}
	if l := verifyOK(t, mem, vkey, VerifyOptions{}).Logs[0]; l.Verified.N != 30 || l.Checkpoints != 3 {
		t.Fatalf("report %+v", l)
	}
}

// TestVerifyWhileAppending: Verify of a live log never reports a false
// problem, even when checkpoints appear after its listing began.
func TestVerifyWhileAppending(t *testing.T) {
	skey, vkey := keys(t)
	mem := newTestStore()
	a := mustAppender(t, mem, skey, AppenderOptions{Now: newClock().Now, CheckpointRecords: 7, MaxBatch: 4})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	for range 4 {
		wg.Go(func() {
			for i := 0; appended.Load() < 3000; i++ { // bounded: each Verify reads the whole log
				select {
				case <-stop:
					return
				default:
				}
				if _, err := a.Append(context.Background(), sampleRecord(i)); err != nil {
					t.Error(err)
					return
				}
				appended.Add(1)
			}
		})
	}
	verifies := 0
	for ; verifies < 20 || appended.Load() < 1000; verifies++ {
		if _, err := Verify(context.Background(), mem, vkey, VerifyOptions{Now: soonAfterBuild}); err != nil {
			t.Fatalf("Verify of a live log: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d verifications during %d appends", verifies, appended.Load())
}

func TestNewAppenderErrors(t *testing.T) {
	skey, _ := keys(t)
	ctx := context.Background()
	mem := newTestStore()
	a := mustAppender(t, mem, skey, AppenderOptions{LogID: "taken"})
	if _, err := a.Append(ctx, sampleRecord(0)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  string
		opts AppenderOptions
		want error
	}{
		{"log exists", skey, AppenderOptions{LogID: "taken"}, ErrLogExists},
		{"bad log ID", skey, AppenderOptions{LogID: "a/b"}, nil},
		{"negative retention", skey, AppenderOptions{RetainFor: -1}, nil},
		{"huge batch", skey, AppenderOptions{MaxBatch: maxBatchRecords}, nil},
		{"verifier key as signer", strings.TrimPrefix(skey, "PRIVATE+KEY+"), AppenderOptions{}, nil},
		{"garbage key", "PRIVATE+KEY+x+00000000+AAAA", AppenderOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAppender(ctx, mem, tt.key, tt.opts)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("NewAppender: %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), skey[20:]) {
				t.Fatal("error quotes the key")
			}
		})
	}
	if _, err := a.Append(ctx, Record{Event: "Bad Event", Outcome: OutcomeOK}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("invalid record: %v", err)
	}
}

func TestAppenderRedacts(t *testing.T) {
	skey, _ := keys(t)
	a := mustAppender(t, newTestStore(), skey, AppenderOptions{LogID: "redact"})
	secret := skey[strings.LastIndexByte(skey, '+')+1:]
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		s := fmt.Sprintf(format, a)
		if strings.Contains(s, secret) || strings.Contains(s, "PRIVATE") || !strings.Contains(s, "redact") {
			t.Fatalf("%s prints %q", format, s)
		}
	}
	if s := a.String() + a.GoString(); strings.Contains(s, secret) {
		t.Fatal("String leaks the key")
	}
}

// deafStore hangs batch writes while hang is set, ignoring their context
// (a hung NFS mount, a black-holed connection without timeouts); they
// complete, late, once release is closed.
type deafStore struct {
	store.Store
	mu      sync.Mutex
	hang    bool
	release chan struct{}
	hung    int
}

func (d *deafStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	d.mu.Lock()
	hang := d.hang && isBatchKey(key)
	if hang {
		d.hung++
	}
	d.mu.Unlock()
	if hang {
		<-d.release // deaf to ctx
	}
	return d.Store.Put(ctx, key, body, size, opts)
}

// isBatchKey: audit/<log>/<20 digits>, nothing else the appender writes.
func isBatchKey(key string) bool {
	parts := strings.Split(strings.TrimPrefix(key, auditPrefix), "/")
	return strings.HasPrefix(key, auditPrefix) && len(parts) == 2 && len(parts[1]) == 20 &&
		strings.Trim(parts[1], "0123456789") == ""
}

func (d *deafStore) setHang(b bool) {
	d.mu.Lock()
	d.hang = b
	d.mu.Unlock()
}

// TestAppenderHungWriteBounded: a batch write that never returns (and
// ignores its context) fails its callers by their deadline, or by
// WriteTimeout when they have none; the log does not stay blocked: once
// the store answers again the next Append succeeds, even while the hung
// write is still outstanding; hung writes left running are bounded; and
// when the hung writes finally land, late, the logs still verify.
func TestAppenderHungWriteBounded(t *testing.T) {
	signer, verifier := keys(t)
	st := &deafStore{Store: memstore.New(), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(st.release)
		}
	}()
	a := mustAppender(t, st, signer, AppenderOptions{Now: newClock().Now, WriteTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := a.Append(ctx, sampleRecord(0)); err != nil {
		t.Fatal(err)
	}

	st.setHang(true)
	// A caller with a deadline gets its answer by then.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err := a.Append(dctx, sampleRecord(1))
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append to a hung store: %v, want ErrUnavailable", err)
	}
	// Bounds scale with the machine's measured speed (testenv.Slowdown):
	// on a busy machine the appender's goroutines get their turn later.
	if d, limit := time.Since(start), testenv.Scale(time.Second); d > limit {
		t.Fatalf("append with a 100 ms deadline returned after %v, limit %v (slowdown %.1f)", d, limit, testenv.Slowdown())
	}
	// A caller without one gets it by WriteTimeout (plus scheduling).
	start = time.Now()
	_, err = a.Append(ctx, sampleRecord(2))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append to a hung store: %v, want ErrUnavailable", err)
	}
	if d, limit := time.Since(start), testenv.Scale(2*time.Second); d > limit {
		t.Fatalf("append without a deadline returned after %v, WriteTimeout 300 ms, limit %v (slowdown %.1f)", d, limit, testenv.Slowdown())
	}
	// The store answers again while those two calls still hang: the log
	// moves on and Append works.
	st.setHang(false)
	if _, err := a.Append(ctx, sampleRecord(3)); err != nil {
		t.Fatalf("append after the store recovered, with hung calls outstanding: %v", err)
	}
	st.mu.Lock()
	hung := st.hung
	st.mu.Unlock()
	if hung != 2 {
		t.Fatalf("%d batch writes hung, want 2", hung)
	}

	// Hung writes pile up no further than maxHungCalls: then batches
	// fail at once.
	st.setHang(true)
	for i := range maxHungCalls + 2 {
		_, _ = a.Append(ctx, sampleRecord(10+i))
	}
	st.mu.Lock()
	hung = st.hung
	st.mu.Unlock()
	if hung > maxHungCalls {
		t.Fatalf("%d writes left hanging, want at most %d", hung, maxHungCalls)
	}
	start = time.Now()
	if _, err := a.Append(ctx, sampleRecord(20)); !errors.Is(err, ErrUnavailable) || time.Since(start) > testenv.Scale(100*time.Millisecond) {
		t.Fatalf("with %d writes hung: %v after %v, want ErrUnavailable at once", hung, err, time.Since(start))
	}

	// The hung calls finish, late, and land in the logs the appender
	// left; the logs still verify.
	st.setHang(false)
	close(st.release)
	released = true
	deadline := time.Now().Add(testenv.Scale(5 * time.Second))
	for {
		_, err := a.Append(ctx, sampleRecord(30))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log stayed blocked after the store recovered: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the late calls return
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, st, verifier, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("after late writes landed, verify: %+v", rep.Problems())
	}
}
