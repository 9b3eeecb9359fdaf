package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

// adminOnly makes a log of grants, alerts and administrative records:
// nothing the single-use ledger would miss if it vanished.
func adminOnly(i int, r *Record) {
	switch i % 3 {
	case 0:
		*r = Record{Event: EventGrant, Outcome: OutcomeOK, Object: r.Object, Principal: r.Principal, Purpose: "age-check"}
	case 1:
		*r = Record{Event: EventAlert, Outcome: OutcomeOK, Reason: "bulk-access", Principal: r.Principal}
	default:
		*r = Record{Event: EventHold, Outcome: OutcomeOK, Object: r.Object, Principal: "ops-1", Detail: "case 42"}
	}
}

// cutLog keeps the first keep records of log and only the checkpoints of
// at most that size: a truncation that leaves a log consistent in itself.
func cutLog(t *testing.T, st *memstore.Store, log string, keep int) {
	t.Helper()
	relayLog(t, st, log, flatRecords(t, st, log)[:keep], 2)
	for _, k := range checkpointKeys(st, log) {
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(k, checkpointPrefix(log)), "-final"), "-reopen")
		if n, _ := parseSeqName(name); n > int64(keep) || strings.HasSuffix(k, "-final") {
			if err := st.Delete(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// eraseLog removes every object of log: records, checkpoints, registry
// entry and leases.
func eraseLog(t *testing.T, st *memstore.Store, log string) {
	t.Helper()
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, logPrefix(log)) || k == registryKey(log) || strings.HasPrefix(k, leaseDir(log)) {
			if err := st.Delete(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestVerifyUnregisteredSignedLog: a log whose records are all signed but
// whose registry entry was deleted (the first step of erasing it where
// nothing locks the registry) fails, whatever the clock says.
func TestVerifyUnregisteredSignedLog(t *testing.T) {
	skey, vkey := keys(t)
	st := newTestStore()
	log := buildLog(t, st, skey, logSpec{n: 6, batch: 2, checkpoints: []int64{2}, final: true, mutate: adminOnly})
	verifyOK(t, st, vkey, VerifyOptions{})
	if err := st.Delete(context.Background(), registryKey(log)); err != nil {
		t.Fatal(err)
	}
	for _, now := range []func() time.Time{soonAfterBuild, time.Now} {
		checkProblem(t, st, vkey, VerifyOptions{Now: now}, log, ClassUnregistered, 6)
	}
}

// TestVerifyLeaseEvidence: the latest lease of a log is signed evidence.
// Its frontier is a tree the log must still hold; a released lease says a
// final checkpoint of its size exists; a log of which only the lease is
// left was deleted. No --state, no spend entries: logs of grants, alerts
// and holds only.
func TestVerifyLeaseEvidence(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	closed := func(t *testing.T) (*memstore.Store, string) {
		st := newTestStore()
		return st, buildLog(t, st, skey, logSpec{n: 8, batch: 2, checkpoints: []int64{2, 4}, final: true, mutate: adminOnly})
	}
	t.Run("released log truncated", func(t *testing.T) {
		st, log := closed(t)
		verifyOK(t, st, vkey, VerifyOptions{})
		cutLog(t, st, log, 4)
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassTruncated, 4)
	})
	t.Run("released log reopened", func(t *testing.T) {
		// The final checkpoint deleted and records forged after it: what
		// only --state (Finals) caught before.
		st, log := closed(t)
		if err := st.Delete(ctx, checkpointKey(log, 8, true)); err != nil {
			t.Fatal(err)
		}
		raws := flatRecords(t, st, log)
		forged := mustParse(t, raws[7])
		forged.Seq, forged.Principal = 8, "forger"
		st.SetBytes(batchKey(log, 8), encodeBatch([][]byte{mustMarshal(t, forged)}))
		checkProblem(t, st, vkey, VerifyOptions{Now: soonAfterBuild}, log, ClassReopened, -1)
	})
	t.Run("live log truncated", func(t *testing.T) {
		// A live writer's lease carries the frontier of its last
		// checkpoint; the log is cut below it, checkpoints and all.
		st := newTestStore()
		c := newClock()
		a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now, LeaseTTL: 3 * time.Second})
		for i := range 6 {
			r := sampleRecord(i)
			adminOnly(i, &r)
			if _, err := a.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		c.advance(2 * time.Second)
		a.renewLease(ctx) // what the background loop does every LeaseTTL/3
		log := a.LogID()
		if l := leasesOf(t, st, log); len(l) != 1 || l[1].f.n != 6 || l[1].released {
			t.Fatalf("setup: leases %+v", l)
		}
		verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
		cutLog(t, st, log, 3)
		checkProblem(t, st, vkey, VerifyOptions{Now: c.Now}, log, ClassTruncated, 3)
	})
	t.Run("log deleted, lease left", func(t *testing.T) {
		st, log := closed(t)
		for _, k := range st.Keys() {
			if strings.HasPrefix(k, logPrefix(log)) || k == registryKey(log) {
				st.Delete(ctx, k)
			}
		}
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassMissing, -1)
	})
	t.Run("lease forged", func(t *testing.T) {
		st, log := closed(t)
		key := leaseKey(log, 2)
		b, ok := st.Bytes(key)
		if !ok {
			t.Fatal("setup: no released lease at generation 2")
		}
		st.SetBytes(key, bytes.Replace(b, []byte("released"), []byte("2026-04-20T09:00:00Z"), 1))
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassCorrupt, -1)
	})
	t.Run("frontier disagrees", func(t *testing.T) {
		// A lease signed with the key whose frontier is another history of
		// the log (a writer's bug, or a fork).
		st, log := closed(t)
		other := newTestStore()
		buildLog(t, other, skey, logSpec{n: 8, batch: 2, final: true, logID: log, mutate: func(i int, r *Record) {
			adminOnly(i, r)
			if i == 5 {
				r.Detail = "other history"
			}
		}})
		b, _ := other.Bytes(leaseKey(log, 2))
		st.SetBytes(leaseKey(log, 2), b)
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassFork, -1)
	})
}

// appendWitness appends witness records through a's own Append, as the
// vault does.
func appendWitness(t *testing.T, a *Appender, reason, detail string) {
	t.Helper()
	if _, err := a.Append(context.Background(), Record{Event: EventWitness, Outcome: OutcomeOK, Reason: reason, Detail: detail}); err != nil {
		t.Fatal(err)
	}
}

// twoInstances writes, through two appenders, a log "target" of grants
// and alerts only (8 records, closed) and a log of another instance that
// vouches for it with a log-head witness record, then closes both.
func twoInstances(t *testing.T, st store.Store) (target, witness string) {
	t.Helper()
	skey, _ := keys(t)
	ctx := context.Background()
	c := newClock()
	a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now, NewLog: true})
	for i := range 8 {
		r := sampleRecord(i)
		adminOnly(i, &r)
		if _, err := a.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if err := a.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := mustAppender(t, st, skey, AppenderOptions{Now: c.Now, NewLog: true})
	appendWitness(t, b, ReasonLogHead, FormatLogHead(a.LogID(), 5))
	appendWitness(t, b, ReasonLogHead, FormatLogHead(a.LogID(), 8))
	for _, x := range []*Appender{a, b} {
		if err := x.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return a.LogID(), b.LogID()
}

// TestVerifyWitnessLogHeads: a log truncated or deleted as a whole, with
// its checkpoints, registry entry and lease (nothing locks them on a
// filesystem), is caught through another log's signed log-head witness
// records; without --state, and though the log holds no spend.
func TestVerifyWitnessLogHeads(t *testing.T) {
	_, vkey := keys(t)
	t.Run("truncated", func(t *testing.T) {
		st := newTestStore()
		target, witness := twoInstances(t, st)
		verifyOK(t, st, vkey, VerifyOptions{})
		cutLog(t, st, target, 6)
		deleteLeases(t, st, target)
		checkProblem(t, st, vkey, VerifyOptions{}, target, ClassTruncated, 6)
		rep, _ := Verify(context.Background(), st, vkey, VerifyOptions{})
		if p := rep.Problems()[0]; !strings.Contains(p.Detail, witness) {
			t.Fatalf("the problem does not name the witness log: %v", p)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		st := newTestStore()
		target, _ := twoInstances(t, st)
		eraseLog(t, st, target)
		checkProblem(t, st, vkey, VerifyOptions{}, target, ClassMissing, -1)
	})
	t.Run("claims in an unsealed tail are not believed", func(t *testing.T) {
		// Anybody can append a batch; only what a checkpoint covers
		// counts.
		st := newTestStore()
		skey, _ := keys(t)
		c := newClock()
		a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now, NewLog: true})
		appendWitness(t, a, ReasonLogHead, FormatLogHead("nosuchlog", 3))
		appendWitness(t, a, ReasonStateHead, FormatStateHead(9, HashState([]byte("x"))))
		appendWitness(t, a, ReasonLogHead, "not a head")
		if l := verifyOK(t, st, vkey, VerifyOptions{Now: c.Now}).Logs[0]; l.Unsealed != 3 {
			t.Fatalf("report %+v", l)
		}
		if err := a.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), st, vkey, VerifyOptions{Now: c.Now})
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("once checkpointed: %v", err)
		}
		got := map[Class]bool{}
		for _, p := range rep.Problems() {
			got[p.Class] = true
		}
		if !got[ClassMissing] || !got[ClassRollback] || !got[ClassWitness] {
			t.Fatalf("problems %v", rep.Problems())
		}
	})
	t.Run("target grew while verified", func(t *testing.T) {
		// The witness record was written after Verify read the target: a
		// second look finds the records.
		skey, _ := keys(t)
		ctx := context.Background()
		gs := &growStore{Store: newTestStore()}
		c := newClock()
		target := mustAppender(t, gs.Store, skey, AppenderOptions{Now: c.Now, LogID: "a-target"})
		for i := range 3 {
			target.Append(ctx, sampleRecord(i))
		}
		target.Checkpoint(ctx)
		w := mustAppender(t, gs.Store, skey, AppenderOptions{Now: c.Now, LogID: "b-witness"})
		appendWitness(t, w, ReasonLogHead, FormatLogHead("a-target", 5))
		w.Checkpoint(ctx)
		gs.onFirst("audit/b-witness/", func() {
			for i := range 2 {
				target.Append(ctx, sampleRecord(3+i))
			}
		})
		rep, err := Verify(ctx, gs, vkey, VerifyOptions{Now: c.Now})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if !gs.fired() {
			t.Fatal("setup: the target did not grow during Verify")
		}
		if l := rep.Logs[0]; l.Log != "a-target" || l.Records != 5 {
			t.Fatalf("report %+v", l)
		}
	})
}

// growStore runs a function once, before the first Get under a prefix.
type growStore struct {
	*memstore.Store
	mu     sync.Mutex
	prefix string
	f      func()
	done   bool
}

func (g *growStore) onFirst(prefix string, f func()) {
	g.mu.Lock()
	g.prefix, g.f = prefix, f
	g.mu.Unlock()
}

func (g *growStore) fired() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.done
}

func (g *growStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	g.mu.Lock()
	var f func()
	if g.f != nil && !g.done && strings.HasPrefix(key, g.prefix) {
		f, g.done = g.f, true
	}
	g.mu.Unlock()
	if f != nil {
		f()
	}
	return g.Store.Get(ctx, key)
}
