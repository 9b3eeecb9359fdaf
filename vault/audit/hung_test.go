package audit

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/store"
)

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
