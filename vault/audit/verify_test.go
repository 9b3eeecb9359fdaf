package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var matrixSizes = []int{1, 2, 7, 8, 9, 255, 256, 257, 1025}

// matrixSpec: batches of 3 records, intermediate checkpoints near a third
// and two thirds of the log, closed with a final checkpoint.
func matrixSpec(n int) logSpec {
	const batch = 3
	var cps []int64
	for _, c := range []int{n / 3, 2 * n / 3} {
		c -= c % batch
		if c > 0 && c < n && !slices.Contains(cps, int64(c)) {
			cps = append(cps, int64(c))
		}
	}
	return logSpec{n: n, batch: batch, checkpoints: cps, final: true, logID: "matrixlog"}
}

type tamperEnv struct {
	t          *testing.T
	st         *memstore.Store
	log        string
	n          int
	spec       logSpec
	skey, vkey string
}

// verifiedBelow is the largest checkpoint size <= k: where Verify can say
// the records were still good when it finds a mismatch after k.
func (e *tamperEnv) verifiedBelow(k int) int64 {
	v := int64(0)
	for _, c := range e.spec.checkpoints {
		if c <= int64(k) && c > v {
			v = c
		}
	}
	return v
}

func (e *tamperEnv) raws() [][]byte { return flatRecords(e.t, e.st, e.log) }

func (e *tamperEnv) relay(raws [][]byte) { relayLog(e.t, e.st, e.log, raws, e.spec.batch) }

// reencode returns raw with its record changed by edit.
func (e *tamperEnv) reencode(raw []byte, edit func(r *Record)) []byte {
	r := mustParse(e.t, raw)
	edit(&r)
	return mustMarshal(e.t, r)
}

func (e *tamperEnv) forged(seq int) []byte {
	return mustMarshal(e.t, Record{Time: time.Date(2026, 4, 20, 9, 0, 0, 0, time.UTC), Log: e.log, Seq: int64(seq),
		Event: EventRedeem, Outcome: OutcomeOK, Object: "00ff", Principal: "attacker", Purpose: "age-check"})
}

func (e *tamperEnv) cpKeys() []string { return checkpointKeys(e.st, e.log) }

// anyseq marks an expectation that does not pin the position.
const anyseq = -2

type tamperCase struct {
	name string
	minN int
	do   func(e *tamperEnv) (Class, int64)
}

func tamperCases() []tamperCase {
	editRecord := func(k func(n int) int, edit func([]byte) []byte) func(e *tamperEnv) (Class, int64) {
		return func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := k(e.n)
			raws[i] = edit(raws[i])
			e.relay(raws)
			return ClassMismatch, e.verifiedBelow(i)
		}
	}
	first := func(int) int { return 0 }
	middle := func(n int) int { return n / 2 }
	last := func(n int) int { return n - 1 }
	flipTimeByte := func(raw []byte) []byte { raw[8] ^= 0x01; return raw }
	deleteAt := func(k func(n int) int) func(e *tamperEnv) (Class, int64) {
		return func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := k(e.n)
			e.relay(slices.Delete(raws, i, i+1))
			if i == e.n-1 {
				return ClassTruncated, int64(i)
			}
			return ClassGap, int64(i)
		}
	}
	return []tamperCase{
		{"byte changed in first record", 1, editRecord(first, flipTimeByte)},
		{"byte changed in middle record", 1, editRecord(middle, flipTimeByte)},
		{"byte changed in last record", 1, editRecord(last, flipTimeByte)},
		{"field edited and re-encoded", 1, func(e *tamperEnv) (Class, int64) {
			return editRecord(middle, func(raw []byte) []byte {
				return e.reencode(raw, func(r *Record) { r.Principal = "someone-else" })
			})(e)
		}},
		{"first record deleted", 1, deleteAt(first)},
		{"middle record deleted", 1, deleteAt(middle)},
		{"last record deleted", 1, deleteAt(last)},
		{"tail truncated", 1, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			keep := e.n - max(1, e.n/4)
			e.relay(raws[:keep])
			return ClassTruncated, int64(keep)
		}},
		{"batch object deleted", 1, func(e *tamperEnv) (Class, int64) {
			bs := readBatches(e.t, e.st, e.log)
			b := bs[len(bs)/2]
			if err := e.st.Delete(context.Background(), b.key); err != nil {
				e.t.Fatal(err)
			}
			start, _ := parseSeqName(strings.TrimPrefix(b.key, logPrefix(e.log)))
			if len(bs) == 1 || b.key == bs[len(bs)-1].key {
				return ClassTruncated, start
			}
			return ClassGap, start
		}},
		{"two records swapped", 2, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i, j := e.n/3, e.n-1
			raws[i], raws[j] = raws[j], raws[i]
			e.relay(raws)
			return ClassReordered, int64(i)
		}},
		{"adjacent records swapped", 2, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := e.n / 2
			if i == e.n-1 {
				i--
			}
			raws[i], raws[i+1] = raws[i+1], raws[i]
			e.relay(raws)
			return ClassReordered, int64(i)
		}},
		{"record duplicated", 1, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := e.n / 2
			e.relay(slices.Insert(raws, i+1, raws[i]))
			return ClassDuplicate, int64(i + 1)
		}},
		{"first record copied to the end", 1, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			e.relay(append(raws, raws[0]))
			return ClassDuplicate, int64(e.n)
		}},
		{"forged record inserted, rest renumbered", 1, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := e.n / 2
			for j := i; j < len(raws); j++ {
				raws[j] = e.reencode(raws[j], func(r *Record) { r.Seq++ })
			}
			e.relay(slices.Insert(raws, i, e.forged(i)))
			return ClassMismatch, e.verifiedBelow(i)
		}},
		{"forged record inserted, not renumbered", 1, func(e *tamperEnv) (Class, int64) {
			raws := e.raws()
			i := e.n / 2
			e.relay(slices.Insert(raws, i, e.forged(i)))
			if i+1 == e.n || slices.Contains(e.spec.checkpoints, int64(i+1)) {
				// A checkpoint ends right after the forged record: its
				// root mismatch comes before the second seq i.
				return ClassMismatch, e.verifiedBelow(i)
			}
			return ClassConflict, int64(i + 1)
		}},
		{"forged record after the final checkpoint", 1, func(e *tamperEnv) (Class, int64) {
			e.relay(append(e.raws(), e.forged(e.n)))
			return ClassPastFinal, int64(e.n)
		}},
		{"checkpoint signature flipped", 1, func(e *tamperEnv) (Class, int64) {
			k := e.cpKeys()[0]
			b, _ := e.st.Bytes(k)
			text, sigs, _ := strings.Cut(string(b), "\n\n")
			name, sig64, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(sigs, "\n"), "— "), " ")
			sig, err := base64.StdEncoding.DecodeString(sig64)
			if err != nil {
				e.t.Fatal(err)
			}
			sig[10] ^= 0x20 // in the Ed25519 signature, after the 4-byte key hash
			e.st.SetBytes(k, []byte(text+"\n\n— "+name+" "+base64.StdEncoding.EncodeToString(sig)+"\n"))
			return ClassBadSignature, -1
		}},
		{"checkpoint text edited", 1, func(e *tamperEnv) (Class, int64) {
			k := e.cpKeys()[0]
			b, _ := e.st.Bytes(k)
			e.st.SetBytes(k, []byte(strings.Replace(string(b), "Z\n", "Z\nfinal\n", 1)))
			return ClassBadSignature, -1
		}},
		{"checkpoint signed by an unknown key", 1, func(e *tamperEnv) (Class, int64) {
			k := e.cpKeys()[0]
			b, _ := e.st.Bytes(k)
			text, _, _ := strings.Cut(string(b), "\n\n")
			other, _, err := GenerateKey("idvault-audit-test") // same name, other key
			if err != nil {
				e.t.Fatal(err)
			}
			s, err := note.NewSigner(other)
			if err != nil {
				e.t.Fatal(err)
			}
			msg, err := note.Sign(&note.Note{Text: text + "\n"}, s)
			if err != nil {
				e.t.Fatal(err)
			}
			e.st.SetBytes(k, msg)
			return ClassUnknownKey, -1
		}},
		{"older checkpoint stored as the final one", 7, func(e *tamperEnv) (Class, int64) {
			ks := e.cpKeys()
			old, _ := e.st.Bytes(ks[0])
			e.st.SetBytes(ks[len(ks)-1], old)
			return ClassRollback, -1
		}},
		{"checkpoint from another log", 1, func(e *tamperEnv) (Class, int64) {
			other := newTestStore()
			spec := e.spec
			spec.logID = "otherlog"
			buildLog(e.t, other, e.skey, spec)
			ks := e.cpKeys()
			b, _ := other.Bytes(strings.Replace(ks[0], e.log, "otherlog", 1))
			e.st.SetBytes(ks[0], b)
			return ClassCorrupt, -1
		}},
		{"forked log: a checkpoint of another history", 1, func(e *tamperEnv) (Class, int64) {
			other := newTestStore()
			spec := e.spec
			spec.checkpoints = append(slices.Clone(spec.checkpoints), int64(e.n))
			spec.mutate = func(i int, r *Record) {
				if i == e.n/2 {
					r.Purpose = "other-history"
				}
			}
			buildLog(e.t, other, e.skey, spec)
			k := checkpointKey(e.log, int64(e.n), false)
			b, ok := other.Bytes(k)
			if !ok {
				e.t.Fatal("no checkpoint in the other history")
			}
			e.st.SetBytes(k, b)
			return ClassFork, -1
		}},
	}
}

func verifyOK(t *testing.T, st *memstore.Store, vkey string, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), st, vkey, opts)
	if err != nil {
		t.Fatalf("Verify of an untampered log: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify of an untampered log reports %v", rep.Problems())
	}
	return rep
}

func TestTamperMatrix(t *testing.T) {
	skey, vkey := keys(t)
	for _, n := range matrixSizes {
		spec := matrixSpec(n)
		t.Run(fmt.Sprintf("n=%d/untampered", n), func(t *testing.T) {
			st := newTestStore()
			log := buildLog(t, st, skey, spec)
			rep := verifyOK(t, st, vkey, VerifyOptions{})
			l := rep.Logs[0]
			if len(rep.Logs) != 1 || l.Log != log || l.Records != int64(n) || !l.Final || l.Verified.N != int64(n) ||
				l.Checkpoints != len(spec.checkpoints)+1 || l.Unsealed != 0 {
				t.Fatalf("report %+v", l)
			}
			// Also with the trusted tree of this very run.
			verifyOK(t, st, vkey, VerifyOptions{Trusted: map[string]tlog.Tree{log: l.Verified}})
		})
		for _, tc := range tamperCases() {
			if n < tc.minN {
				continue
			}
			t.Run(fmt.Sprintf("n=%d/%s", n, tc.name), func(t *testing.T) {
				e := &tamperEnv{t: t, st: newTestStore(), n: n, spec: spec, skey: skey, vkey: vkey}
				e.log = buildLog(t, e.st, skey, spec)
				class, seq := tc.do(e)
				checkProblem(t, e.st, vkey, VerifyOptions{}, e.log, class, seq)
			})
		}
		t.Run(fmt.Sprintf("n=%d/rolled back to an older copy", n), func(t *testing.T) {
			st := newTestStore()
			log := buildLog(t, st, skey, spec)
			trusted := verifyOK(t, st, vkey, VerifyOptions{}).Logs[0].Verified
			m := int64(0)
			if len(spec.checkpoints) > 0 {
				m = spec.checkpoints[0]
			}
			relayLog(t, st, log, flatRecords(t, st, log)[:m], spec.batch)
			for _, k := range checkpointKeys(st, log) {
				if n, _ := parseSeqName(strings.TrimSuffix(strings.TrimPrefix(k, checkpointPrefix(log)), "-final")); n > m {
					if err := st.Delete(context.Background(), k); err != nil {
						t.Fatal(err)
					}
				}
			}
			if m > 0 {
				// Its lease vouches for all n records.
				checkProblem(t, st, vkey, VerifyOptions{}, log, ClassTruncated, m)
				// With the lease of the older copy (one that vouched for
				// nothing yet), the older copy is consistent in itself.
				deleteLeases(t, st, log)
				verifyOK(t, st, vkey, VerifyOptions{})
			}
			checkProblem(t, st, vkey, VerifyOptions{Trusted: map[string]tlog.Tree{log: trusted}}, log, ClassRollback, m)
		})
		t.Run(fmt.Sprintf("n=%d/forked: records differ from a trusted tree", n), func(t *testing.T) {
			st, other := newTestStore(), newTestStore()
			log := buildLog(t, st, skey, spec)
			alt := spec
			alt.mutate = func(i int, r *Record) {
				if i == n-1 {
					r.Detail = "other"
				}
			}
			buildLog(t, other, skey, alt)
			trusted := verifyOK(t, other, vkey, VerifyOptions{}).Logs[0].Verified
			checkProblem(t, st, vkey, VerifyOptions{Trusted: map[string]tlog.Tree{log: trusted}}, log, ClassFork, -1)
		})
	}
}

func checkProblem(t *testing.T, st *memstore.Store, vkey string, opts VerifyOptions, log string, class Class, seq int64) {
	t.Helper()
	rep, err := Verify(context.Background(), st, vkey, opts)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("Verify: %v, want ErrTampered", err)
	}
	if rep == nil || rep.OK() {
		t.Fatal("report says OK")
	}
	var lr *LogReport
	for i := range rep.Logs {
		if rep.Logs[i].Log == log {
			lr = &rep.Logs[i]
		}
	}
	if lr == nil || lr.Problem == nil {
		t.Fatalf("no problem reported for log %s: %v", log, rep.Problems())
	}
	p := lr.Problem
	if p.Class != class || (seq != anyseq && p.Seq != seq) {
		t.Fatalf("problem %v; want class %s at seq %d", p, class, seq)
	}
	if p.Log != log {
		t.Fatalf("problem names log %q", p.Log)
	}
}

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

// TestVerifyEveryBitFlip flips every bit of every stored object of a small
// closed log (its lease included: Verify reads it as evidence), one at a
// time: each is reported as tampering, never a panic.
func TestVerifyEveryBitFlip(t *testing.T) {
	skey, vkey := keys(t)
	st := newTestStore()
	log := buildLog(t, st, skey, logSpec{n: 4, batch: 2, checkpoints: []int64{2}, final: true})
	verifyOK(t, st, vkey, VerifyOptions{})
	flips := 0
	for _, k := range st.Keys() {
		if strings.Contains(k, "checkpoints/") && !strings.HasSuffix(k, "-final") {
			continue // one checkpoint is enough to flip exhaustively
		}
		orig, _ := st.Bytes(k)
		for bit := range len(orig) * 8 {
			b := []byte(string(orig))
			b[bit/8] ^= 1 << (bit % 8)
			st.SetBytes(k, b)
			rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
			if !errors.Is(err, ErrTampered) || rep.OK() {
				t.Fatalf("%s bit %d flipped: err %v", k, bit, err)
			}
			flips++
		}
		st.SetBytes(k, orig)
	}
	verifyOK(t, st, vkey, VerifyOptions{})
	t.Logf("%d single-bit flips of log %s detected", flips, log)
}

// TestVerifyEveryTruncation truncates each object at every length.
func TestVerifyEveryTruncation(t *testing.T) {
	skey, vkey := keys(t)
	st := newTestStore()
	buildLog(t, st, skey, logSpec{n: 5, batch: 2, checkpoints: []int64{2}, final: true})
	for _, k := range st.Keys() {
		orig, _ := st.Bytes(k)
		for l := range len(orig) {
			st.SetBytes(k, orig[:l])
			rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
			if !errors.Is(err, ErrTampered) || rep.OK() {
				t.Fatalf("%s truncated to %d: err %v", k, l, err)
			}
		}
		st.SetBytes(k, orig)
	}
	verifyOK(t, st, vkey, VerifyOptions{})
}

// TestVerifyLiveLogs: logs without a final checkpoint, with records past
// their last checkpoint, are fine and say how many records are unsealed.
func TestVerifyLiveLogs(t *testing.T) {
	skey, vkey := keys(t)
	for _, n := range matrixSizes {
		for _, tail := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("n=%d+%d", n, tail), func(t *testing.T) {
				st := newTestStore()
				spec := matrixSpec(n + tail)
				spec.final = false
				spec.checkpoints = slices.DeleteFunc(spec.checkpoints, func(c int64) bool { return c > int64(n) })
				spec.checkpoints = append(spec.checkpoints, int64(n))
				spec.batch = 1
				buildLog(t, st, skey, spec)
				l := verifyOK(t, st, vkey, VerifyOptions{}).Logs[0]
				if l.Final || l.Verified.N != int64(n) || l.Unsealed != int64(tail) || l.Records != int64(n+tail) {
					t.Fatalf("report %+v", l)
				}
			})
		}
	}
	t.Run("no checkpoint at all", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 5, batch: 2})
		l := verifyOK(t, st, vkey, VerifyOptions{Now: soonAfterBuild}).Logs[0]
		if l.Unsealed != 5 || l.Checkpoints != 0 {
			t.Fatalf("report %+v", l)
		}
	})
	t.Run("empty store", func(t *testing.T) {
		if rep := verifyOK(t, newTestStore(), vkey, VerifyOptions{}); len(rep.Logs) != 0 {
			t.Fatalf("report %+v", rep)
		}
	})
}

func TestVerifyStrayObjects(t *testing.T) {
	skey, vkey := keys(t)
	tests := []struct {
		key  string
		want Class
	}{
		{"audit/loose-object", ClassCorrupt},
		{"audit/L/junk", ClassCorrupt},
		{"audit/L/-early", ClassCorrupt},
		{"audit/L/0000000000000000001", ClassCorrupt}, // 19 digits
		{"audit/L/checkpoints/junk", ClassCorrupt},
		{"audit/L/checkpoints/00000000000000000004-final-x", ClassCorrupt},
		{"audit/" + strings.Repeat("x", MaxLogLen+1) + "/00000000000000000000", ClassCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			st := newTestStore()
			buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "L"})
			st.SetBytes(tt.key, []byte("x"))
			rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify: %v", err)
			}
			if ps := rep.Problems(); len(ps) != 1 || ps[0].Class != tt.want {
				t.Fatalf("problems %v", ps)
			}
		})
	}
	t.Run("renamed batch", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, logID: "L"})
		b, _ := st.Bytes(batchKey("L", 2))
		if err := st.Delete(context.Background(), batchKey("L", 2)); err != nil {
			t.Fatal(err)
		}
		st.SetBytes(batchKey("L", 3), b)
		checkProblem(t, st, vkey, VerifyOptions{}, "L", ClassCorrupt, -1)
	})
	t.Run("checkpoints without records", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "L"})
		for _, b := range readBatches(t, st, "L") {
			if err := st.Delete(context.Background(), b.key); err != nil {
				t.Fatal(err)
			}
		}
		checkProblem(t, st, vkey, VerifyOptions{}, "L", ClassTruncated, 0)
	})
	t.Run("record moved from another log", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "L"})
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "M"})
		b, _ := st.Bytes(batchKey("M", 2))
		st.SetBytes(batchKey("L", 2), b)
		checkProblem(t, st, vkey, VerifyOptions{}, "L", ClassCorrupt, 2)
	})
}

func TestVerifyManyLogs(t *testing.T) {
	skey, vkey := keys(t)
	st := newTestStore()
	for i, id := range []string{"a", "a.b", "a-b", "b", "c"} {
		buildLog(t, st, skey, logSpec{n: 3 + i, batch: 2, checkpoints: []int64{2}, final: i%2 == 0, logID: id})
	}
	rep := verifyOK(t, st, vkey, VerifyOptions{})
	var got []string
	for _, l := range rep.Logs {
		got = append(got, fmt.Sprintf("%s:%d", l.Log, l.Records))
	}
	if s := strings.Join(got, " "); s != "a:3 a-b:5 a.b:4 b:6 c:7" {
		t.Fatalf("logs %s", s)
	}
	// Tamper with one: only it is reported.
	raws := flatRecords(t, st, "a.b")
	relayLog(t, st, "a.b", raws[1:], 2)
	rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
	if !errors.Is(err, ErrTampered) {
		t.Fatal(err)
	}
	if ps := rep.Problems(); len(ps) != 1 || ps[0].Log != "a.b" || ps[0].Class != ClassGap || ps[0].Seq != 0 {
		t.Fatalf("problems %v", ps)
	}
}

func TestVerifyContinuations(t *testing.T) {
	skey, vkey := keys(t)
	cont := func(log string, size int) func(int, *Record) {
		return func(i int, r *Record) {
			if i == 0 {
				*r = Record{Event: EventOpen, Outcome: OutcomeOK, Reason: "continues", Detail: fmt.Sprintf("log %s size %d", log, size)}
			}
		}
	}
	t.Run("consistent", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, checkpoints: []int64{4}, logID: "old"})
		buildLog(t, st, skey, logSpec{n: 3, batch: 2, final: true, logID: "new", mutate: cont("old", 4)})
		rep := verifyOK(t, st, vkey, VerifyOptions{})
		if l := rep.Logs[0]; l.Log != "new" || l.Continues != "old" || l.ContinuesSize != 4 {
			t.Fatalf("report %+v", l)
		}
	})
	t.Run("predecessor deleted", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 3, batch: 2, final: true, logID: "new", mutate: cont("old", 4)})
		checkProblem(t, st, vkey, VerifyOptions{}, "old", ClassMissing, -1)
	})
	t.Run("predecessor truncated", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 2, batch: 2, logID: "old"})
		buildLog(t, st, skey, logSpec{n: 3, batch: 2, final: true, logID: "new", mutate: cont("old", 4)})
		checkProblem(t, st, vkey, VerifyOptions{Now: soonAfterBuild}, "old", ClassTruncated, 2)
	})
}

func TestVerifyErrors(t *testing.T) {
	skey, vkey := keys(t)
	st := newTestStore()
	buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true})
	for _, bad := range []string{"", "not a key", skey} {
		if _, err := Verify(context.Background(), st, bad, VerifyOptions{}); err == nil || errors.Is(err, ErrTampered) {
			t.Fatalf("bad verifier key: %v", err)
		} else if strings.Contains(err.Error(), "PRIVATE") {
			t.Fatal("error quotes the key")
		}
	}
	boom := errors.New("disk on fire")
	for _, failOn := range []string{"list", "get"} {
		fs := &faultyStore{Store: st, listErr: failOn == "list", getErr: failOn == "get", err: boom}
		_, err := Verify(context.Background(), fs, vkey, VerifyOptions{})
		if !errors.Is(err, boom) || errors.Is(err, ErrTampered) {
			t.Fatalf("%s failing: %v, want the store's error and not ErrTampered", failOn, err)
		}
	}
}

// faultyStore fails List or Get, for Verify's error paths.
type faultyStore struct {
	*memstore.Store
	listErr, getErr bool
	err             error
}

func (f *faultyStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	if f.listErr {
		return func(yield func(string, error) bool) { yield("", f.err) }
	}
	return f.Store.List(ctx, prefix)
}

func (f *faultyStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if f.getErr {
		return nil, f.err
	}
	return f.Store.Get(ctx, key)
}

// soonAfterBuild is a Verify clock a minute after the records buildLog
// writes: inside DefaultUnsignedGrace.
func soonAfterBuild() time.Time { return newClock().t.Add(time.Minute) }
