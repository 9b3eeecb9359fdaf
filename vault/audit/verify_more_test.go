package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
)

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
