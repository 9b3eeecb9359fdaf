package main

import (
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// tracingStore wraps the vault's s3store and times every call by phase
// (the case being measured), operation and key class (blobs, keys, index,
// redeemed, audit, ...): with -tracestore it shows where the time of a
// Put or a Redeem goes, which a CPU profile cannot, since the vault spends
// most of it waiting for MinIO. Embedding keeps s3store's other methods
// (Versioned, which Open checks).
type tracingStore struct {
	*s3store.Store
	label string // prefixed to every phase in the report ("redislimiter ")
	phase atomic.Pointer[string]

	mu    sync.Mutex
	calls map[traceKey][]time.Duration
	ops   map[string]int // vault operations per phase
	order []string       // phases in first-seen order
}

type traceKey struct{ phase, op, class string }

// StoreOp is one line of the store trace: what one kind of store call cost
// during one case.
type StoreOp struct {
	Phase      string  `json:"phase"`
	Op         string  `json:"op"`    // Put, Put IfAbsent, Get, Delete, List
	Class      string  `json:"class"` // first key segment: blobs, keys, index, redeemed, audit, ...
	N          int     `json:"n"`
	PerVaultOp float64 `json:"per_vault_op"` // calls per Put, or per Grant+Redeem
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
}

func newTracingStore(st *s3store.Store) *tracingStore {
	return &tracingStore{Store: st, calls: map[traceKey][]time.Duration{}, ops: map[string]int{}}
}

// setPhase attributes the calls that follow to phase ("" stops recording).
func (t *tracingStore) setPhase(phase string) {
	t.phase.Store(&phase)
	t.mu.Lock()
	if phase != "" && !slices.Contains(t.order, phase) {
		t.order = append(t.order, phase)
	}
	t.mu.Unlock()
}

// vaultOp counts one idvault operation in the current phase.
func (t *tracingStore) vaultOp() {
	if t == nil {
		return
	}
	if p := t.phase.Load(); p != nil && *p != "" {
		t.mu.Lock()
		t.ops[*p]++
		t.mu.Unlock()
	}
}

func (t *tracingStore) record(op, key string, d time.Duration) {
	p := t.phase.Load()
	if p == nil || *p == "" {
		return
	}
	class, _, _ := strings.Cut(key, "/")
	k := traceKey{*p, op, class}
	t.mu.Lock()
	t.calls[k] = append(t.calls[k], d)
	t.mu.Unlock()
}

func (t *tracingStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	t0 := time.Now()
	err := t.Store.Put(ctx, key, body, size, opts)
	op := "Put"
	if opts.IfAbsent {
		op = "Put IfAbsent"
	}
	t.record(op, key, time.Since(t0))
	return err
}

// Get times the call until the response headers arrive (s3store returns
// then); reading the body is not included.
func (t *tracingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	t0 := time.Now()
	rc, err := t.Store.Get(ctx, key)
	t.record("Get", key, time.Since(t0))
	return rc, err
}

func (t *tracingStore) Delete(ctx context.Context, key string) error {
	t0 := time.Now()
	err := t.Store.Delete(ctx, key)
	t.record("Delete", key, time.Since(t0))
	return err
}

func (t *tracingStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		t0 := time.Now()
		defer func() { t.record("List", prefix, time.Since(t0)) }()
		for k, err := range t.Store.List(ctx, prefix) {
			if !yield(k, err) {
				return
			}
		}
	}
}

// report returns the trace, phase by phase, costliest calls first.
func (t *tracingStore) report() []StoreOp {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []StoreOp
	for _, phase := range t.order {
		var rows []StoreOp
		for k, d := range t.calls {
			if k.phase != phase {
				continue
			}
			r := StoreOp{Phase: t.label + phase, Op: k.op, Class: k.class, N: len(d), P50Ms: ms(quantile(d, 0.5)), P99Ms: ms(quantile(d, 0.99))}
			if n := t.ops[phase]; n > 0 {
				r.PerVaultOp = float64(len(d)) / float64(n)
			}
			rows = append(rows, r)
		}
		slices.SortFunc(rows, func(a, b StoreOp) int {
			if c := strings.Compare(a.Class, b.Class); c != 0 {
				return c
			}
			return strings.Compare(a.Op, b.Op)
		})
		out = append(out, rows...)
	}
	return out
}

func (t *tracingStore) String() string { return fmt.Sprintf("tracing(%v)", t.Store) }
