package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/internal/memstore"
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
