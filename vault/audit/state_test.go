package audit

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

func stateSigner(t testing.TB) (*StateSigner, string) {
	t.Helper()
	skey, vkey := keys(t)
	ss, err := NewStateSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return ss, vkey
}

var (
	testObject    = strings.Repeat("ab", 16)
	testPrincipal = strings.Repeat("cd", 32)
)

// writeChain stores n entries (hold, release, freeze, unfreeze, …) and
// returns their stored bytes.
func writeChain(t testing.TB, st store.Store, ss *StateSigner, n int) [][]byte {
	t.Helper()
	kinds := []StateKind{StateHold, StateRelease, StateFreeze, StateUnfreeze}
	var out [][]byte
	var prev StateHash
	for i := 1; i <= n; i++ {
		k := kinds[(i-1)%len(kinds)]
		target := testObject
		if k == StateFreeze || k == StateUnfreeze {
			target = testPrincipal
		}
		b, err := ss.Sign(StateEntry{Seq: int64(i), Prev: prev, Time: time.Date(2026, 12, 1, 9, 0, i, 5, time.UTC), Kind: k, Target: target})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(context.Background(), StateKey(int64(i)), bytes.NewReader(b), int64(len(b)), store.PutOptions{IfAbsent: true}); err != nil {
			t.Fatal(err)
		}
		prev = HashState(b)
		out = append(out, b)
	}
	return out
}

func TestStateEntryRoundTrip(t *testing.T) {
	ss, vkey := stateSigner(t)
	e := StateEntry{Seq: 2, Prev: HashState([]byte("x")), Time: time.Date(2026, 12, 1, 9, 0, 0, 123, time.FixedZone("x", 3600)), Kind: StateFreeze, Target: testPrincipal}
	b, err := ss.Sign(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenStateEntry(b, vkey)
	if err != nil {
		t.Fatal(err)
	}
	e.Time = e.Time.UTC()
	if got != e {
		t.Fatalf("got %+v, want %+v", got, e)
	}
	if s := ss.String(); strings.Contains(s, "PRIVATE") {
		t.Fatalf("StateSigner prints its key: %s", s)
	}
}

func TestStateEntryRefusesInvalid(t *testing.T) {
	ss, _ := stateSigner(t)
	now := time.Now()
	for name, e := range map[string]StateEntry{
		"seq 0":            {Seq: 0, Time: now, Kind: StateHold, Target: testObject},
		"first with prev":  {Seq: 1, Prev: StateHash{1}, Time: now, Kind: StateHold, Target: testObject},
		"unknown kind":     {Seq: 1, Time: now, Kind: "delete", Target: testObject},
		"short object":     {Seq: 1, Time: now, Kind: StateHold, Target: "abcd"},
		"principal as obj": {Seq: 1, Time: now, Kind: StateRelease, Target: testPrincipal},
		"upper hex":        {Seq: 1, Time: now, Kind: StateHold, Target: strings.ToUpper(testObject)},
		"object as princ":  {Seq: 1, Time: now, Kind: StateFreeze, Target: testObject},
	} {
		if _, err := ss.Sign(e); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Sign = %v, want ErrInvalidRecord", name, err)
		}
	}
}

// Every single-byte change of a stored entry fails: the signature covers
// the text, and the note must be in canonical form.
func TestStateEntryFlipEveryByte(t *testing.T) {
	ss, vkey := stateSigner(t)
	b, err := ss.Sign(StateEntry{Seq: 3, Prev: HashState([]byte("p")), Time: time.Now(), Kind: StateHold, Target: testObject})
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			c := bytes.Clone(b)
			c[i] ^= x
			if _, err := OpenStateEntry(c, vkey); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: err = %v, want ErrCorrupt", i, x, err)
			}
		}
	}
	for i := range len(b) {
		if _, err := OpenStateEntry(b[:i], vkey); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: err = %v, want ErrCorrupt", i, err)
		}
	}
	// Another key's entry.
	skey2, vkey2, _ := GenerateKey("other")
	ss2, _ := NewStateSigner(skey2)
	b2, _ := ss2.Sign(StateEntry{Seq: 1, Time: time.Now(), Kind: StateHold, Target: testObject})
	if _, err := OpenStateEntry(b2, vkey); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("foreign key: err = %v, want ErrCorrupt", err)
	}
	if _, err := OpenStateEntry(b2, vkey2); err != nil {
		t.Fatal(err)
	}
}

func TestStateReaderFollowsChain(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	ss, vkey := stateSigner(t)
	stored := writeChain(t, st, ss, 5)
	r, err := NewStateReader(st, vkey)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []StateKind
	n, err := r.Next(ctx, func(e StateEntry, b []byte) error {
		kinds = append(kinds, e.Kind)
		if !bytes.Equal(b, stored[e.Seq-1]) {
			t.Errorf("entry %d: stored bytes differ", e.Seq)
		}
		return nil
	})
	if err != nil || n != 5 || r.Len() != 5 || r.Head() != HashState(stored[4]) {
		t.Fatalf("Next = %d, %v; Len %d", n, err, r.Len())
	}
	if len(kinds) != 5 || kinds[0] != StateHold || kinds[3] != StateUnfreeze {
		t.Fatalf("kinds %v", kinds)
	}
	if err := r.CheckGap(ctx); err != nil {
		t.Fatal(err)
	}
	// Following: a new entry made from the reader's position links.
	e := r.MakeStateEntry(time.Now(), StateRelease, testObject)
	b, err := ss.Sign(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, StateKey(e.Seq), bytes.NewReader(b), int64(len(b)), store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Next(ctx, nil); n != 1 || err != nil || r.Len() != 6 {
		t.Fatalf("follow: %d, %v, len %d", n, err, r.Len())
	}
	// Accept: what this process wrote itself.
	e = r.MakeStateEntry(time.Now(), StateHold, testObject)
	b, _ = ss.Sign(e)
	if _, err := r.Accept(b); err != nil || r.Len() != 7 {
		t.Fatalf("Accept: %v, len %d", err, r.Len())
	}
	if _, err := r.Accept(b); !errors.Is(err, ErrStateBroken) {
		t.Fatalf("Accept of the same entry twice: %v, want ErrStateBroken", err)
	}
}

func TestStateReaderDetectsTampering(t *testing.T) {
	ctx := context.Background()
	ss, vkey := stateSigner(t)
	skey2, _, _ := GenerateKey("other")
	foreign, _ := NewStateSigner(skey2)
	for name, tc := range map[string]struct {
		tamper  func(st store.Store, stored [][]byte)
		wantLen int64 // entries read before the problem
		gap     bool  // found only by CheckGap
	}{
		"middle deleted": {func(st store.Store, _ [][]byte) { st.Delete(ctx, StateKey(3)) }, 2, true},
		"middle replaced by a valid entry that does not link": {func(st store.Store, _ [][]byte) {
			b, _ := ss.Sign(StateEntry{Seq: 3, Prev: HashState([]byte("other history")), Time: time.Now(), Kind: StateRelease, Target: testObject})
			st.Delete(ctx, StateKey(3))
			st.Put(ctx, StateKey(3), bytes.NewReader(b), int64(len(b)), store.PutOptions{})
		}, 2, false},
		"entries swapped": {func(st store.Store, stored [][]byte) {
			st.Delete(ctx, StateKey(2))
			st.Delete(ctx, StateKey(3))
			st.Put(ctx, StateKey(2), bytes.NewReader(stored[2]), int64(len(stored[2])), store.PutOptions{})
			st.Put(ctx, StateKey(3), bytes.NewReader(stored[1]), int64(len(stored[1])), store.PutOptions{})
		}, 1, false},
		"foreign key": {func(st store.Store, stored [][]byte) {
			b, _ := foreign.Sign(StateEntry{Seq: 4, Prev: HashState(stored[2]), Time: time.Now(), Kind: StateRelease, Target: testObject})
			st.Delete(ctx, StateKey(4))
			st.Put(ctx, StateKey(4), bytes.NewReader(b), int64(len(b)), store.PutOptions{})
		}, 3, false},
		"stray object": {func(st store.Store, _ [][]byte) {
			st.Put(ctx, StatePrefix+"x", bytes.NewReader(nil), 0, store.PutOptions{})
		}, 5, true},
	} {
		t.Run(name, func(t *testing.T) {
			st := memstore.New()
			stored := writeChain(t, st, ss, 5)
			tc.tamper(st, stored)
			r, _ := NewStateReader(st, vkey)
			_, err := r.Next(ctx, nil)
			if tc.gap {
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				err = r.CheckGap(ctx)
			}
			if !errors.Is(err, ErrStateBroken) {
				t.Fatalf("err = %v, want ErrStateBroken", err)
			}
			if r.Len() != tc.wantLen {
				t.Fatalf("read %d entries before the problem, want %d", r.Len(), tc.wantLen)
			}
		})
	}
}

func TestWitnessDetails(t *testing.T) {
	d := FormatLogHead("0123abcd", 42)
	log, n, err := ParseLogHead(d)
	if err != nil || log != "0123abcd" || n != 42 {
		t.Fatalf("ParseLogHead(%q) = %q, %d, %v", d, log, n, err)
	}
	h := HashState([]byte("x"))
	d = FormatStateHead(7, h)
	l, h2, err := ParseStateHead(d)
	if err != nil || l != 7 || h2 != h {
		t.Fatalf("ParseStateHead(%q) = %d, %v", d, l, err)
	}
	for _, bad := range []string{"", "x", "_bad 1", "log -1", "log 01", "log 1 2"} {
		if _, _, err := ParseLogHead(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseLogHead(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "1", "-1 " + h.String(), "1 abc", "1 " + h.String() + " "} {
		if _, _, err := ParseStateHead(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseStateHead(%q) = %v", bad, err)
		}
	}
}

// chainAndWitness writes a state chain of n entries, then a log whose
// instance vouches for the chain's head (a state-head witness record, as
// the vault writes after reading the chain) and seals it.
func chainAndWitness(t *testing.T, n int) (*memstore.Store, [][]byte, string) {
	t.Helper()
	skey, _ := keys(t)
	ss, _ := stateSigner(t)
	st := newTestStore()
	stored := writeChain(t, st, ss, n)
	c := newClock()
	a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now})
	appendWitness(t, a, ReasonStateHead, FormatStateHead(2, HashState(stored[1])))
	appendWitness(t, a, ReasonStateHead, FormatStateHead(int64(n), HashState(stored[n-1])))
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, stored, a.LogID()
}

func checkStateProblem(t *testing.T, st *memstore.Store, vkey string, opts VerifyOptions, class Class) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), st, vkey, opts)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("Verify: %v, want ErrTampered", err)
	}
	p := rep.State.Problem
	if p == nil || p.Class != class || p.Log != "" {
		t.Fatalf("state problem %v, want class %s; problems %v", p, class, rep.Problems())
	}
	if ps := rep.Problems(); len(ps) == 0 || ps[0] != *p {
		t.Fatalf("Problems() does not lead with the state chain's: %v", ps)
	}
	return rep
}

// TestVerifyStateChain: Verify reads the whole state chain, reports its
// head, and holds it to every state-head witness record a checkpoint
// covers and to the head the caller verified before.
func TestVerifyStateChain(t *testing.T) {
	_, vkey := keys(t)
	ctx := context.Background()
	ss, _ := stateSigner(t)
	t.Run("intact", func(t *testing.T) {
		st, stored, _ := chainAndWitness(t, 5)
		rep := verifyOK(t, st, vkey, VerifyOptions{})
		if rep.State.Length != 5 || rep.State.Hash != HashState(stored[4]) || rep.State.Problem != nil {
			t.Fatalf("state report %+v", rep.State)
		}
		verifyOK(t, st, vkey, VerifyOptions{State: rep.State.StateHead})
		verifyOK(t, st, vkey, VerifyOptions{State: StateHead{Length: 2, Hash: HashState(stored[1])}})
	})
	t.Run("middle entry deleted", func(t *testing.T) {
		st, _, _ := chainAndWitness(t, 5)
		st.Delete(ctx, StateKey(3))
		rep := checkStateProblem(t, st, vkey, VerifyOptions{}, ClassStateBroken)
		if rep.State.Length != 2 || rep.State.Problem.Seq != 3 {
			t.Fatalf("state report %+v", rep.State)
		}
	})
	t.Run("entry re-signed out of the chain", func(t *testing.T) {
		st, _, _ := chainAndWitness(t, 5)
		b, _ := ss.Sign(StateEntry{Seq: 4, Prev: HashState([]byte("elsewhere")), Time: time.Now(), Kind: StateRelease, Target: testObject})
		st.SetBytes(StateKey(4), b)
		checkStateProblem(t, st, vkey, VerifyOptions{}, ClassStateBroken)
	})
	t.Run("newest entries deleted", func(t *testing.T) {
		// A hold's release rolled back: the chain alone looks whole.
		st, _, log := chainAndWitness(t, 5)
		st.Delete(ctx, StateKey(5))
		st.Delete(ctx, StateKey(4))
		rep := checkStateProblem(t, st, vkey, VerifyOptions{}, ClassRollback)
		if rep.State.Length != 3 || !containsAll(rep.State.Problem.Detail, log, "vouches for 5") {
			t.Fatalf("state report %+v", rep.State)
		}
	})
	t.Run("newest entries replaced by another history", func(t *testing.T) {
		st, stored, _ := chainAndWitness(t, 5)
		prev := HashState(stored[2])
		for seq := int64(4); seq <= 5; seq++ {
			b, _ := ss.Sign(StateEntry{Seq: seq, Prev: prev, Time: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Kind: StateHold, Target: testObject})
			st.SetBytes(StateKey(seq), b)
			prev = HashState(b)
		}
		checkStateProblem(t, st, vkey, VerifyOptions{}, ClassFork)
	})
	t.Run("shorter than the head verified before", func(t *testing.T) {
		st := newTestStore()
		stored := writeChain(t, st, ss, 4)
		skey, _ := keys(t)
		buildLog(t, st, skey, logSpec{n: 2, batch: 2, final: true})
		head := StateHead{Length: 4, Hash: HashState(stored[3])}
		verifyOK(t, st, vkey, VerifyOptions{State: head})
		st.Delete(ctx, StateKey(4))
		verifyOK(t, st, vkey, VerifyOptions{}) // nothing in the store says so
		checkStateProblem(t, st, vkey, VerifyOptions{State: head}, ClassRollback)
		b, _ := ss.Sign(StateEntry{Seq: 4, Prev: HashState(stored[2]), Time: time.Now(), Kind: StateFreeze, Target: testPrincipal})
		st.SetBytes(StateKey(4), b)
		checkStateProblem(t, st, vkey, VerifyOptions{State: head}, ClassFork)
	})
	t.Run("chain grows while verified", func(t *testing.T) {
		// A witness record names an entry written after Verify read the
		// chain: it is followed, not reported.
		skey, _ := keys(t)
		gs := &growStore{Store: newTestStore()}
		stored := writeChain(t, gs.Store, ss, 2)
		c := newClock()
		a := mustAppender(t, gs.Store, skey, AppenderOptions{Now: c.Now})
		// The entry that will exist once Verify reads the log.
		third, _ := ss.Sign(StateEntry{Seq: 3, Prev: HashState(stored[1]), Time: time.Now(), Kind: StateHold, Target: testObject})
		appendWitness(t, a, ReasonStateHead, FormatStateHead(3, HashState(third)))
		a.Close(ctx)
		gs.onFirst(logPrefix(a.LogID()), func() { gs.SetBytes(StateKey(3), third) })
		rep, err := Verify(ctx, gs, vkey, VerifyOptions{Now: c.Now})
		if err != nil || !gs.fired() {
			t.Fatalf("Verify: %v (grew: %v)", err, gs.fired())
		}
		if rep.State.Length != 3 {
			t.Fatalf("state report %+v", rep.State)
		}
	})
	t.Run("stray object", func(t *testing.T) {
		st, _, _ := chainAndWitness(t, 2)
		st.SetBytes(StatePrefix+"junk", []byte("x"))
		checkStateProblem(t, st, vkey, VerifyOptions{}, ClassStateBroken)
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestWitnessWithStateHead: LatestState gives the chain's last entry as
// stored; a witness file with it and the heads parses back to the same
// head (ParseWitness), ParseHeads refuses it, and a witness file with two
// different entries of one length is refused.
func TestWitnessWithStateHead(t *testing.T) {
	ctx := context.Background()
	_, vkey := keys(t)
	st, stored, _ := chainAndWitness(t, 3)
	sh, note, err := LatestState(ctx, st, vkey)
	if err != nil || sh.Length != 3 || sh.Hash != HashState(stored[2]) || string(note) != string(stored[2]) {
		t.Fatalf("LatestState: %+v, %v", sh, err)
	}
	heads, err := Heads(ctx, st, vkey)
	if err != nil {
		t.Fatal(err)
	}
	w := append(append(FormatHeads(heads), note...), '\n')
	gotHeads, gotState, err := ParseWitness(w, vkey)
	if err != nil || len(gotHeads) != 1 || gotState != sh {
		t.Fatalf("ParseWitness: %+v, %+v, %v", gotHeads, gotState, err)
	}
	if _, err := ParseHeads(w, vkey); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ParseHeads of a state entry: %v", err)
	}
	if _, s, err := ParseWitness(append(append([]byte{}, stored[0]...), '\n'), vkey); err != nil || s.Length != 1 {
		t.Fatalf("a witness of the state chain only: %+v, %v", s, err)
	}
	ss, _ := stateSigner(t)
	other, _ := ss.Sign(StateEntry{Seq: 3, Prev: HashState(stored[1]), Time: time.Now(), Kind: StateFreeze, Target: testPrincipal})
	if _, _, err := ParseWitness(append(append(w, other...), '\n'), vkey); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("two entries 3: %v", err)
	}
	// A chain with a gap has no head to give.
	st.Delete(ctx, StateKey(2))
	if _, _, err := LatestState(ctx, st, vkey); !errors.Is(err, ErrStateBroken) {
		t.Fatalf("LatestState of a broken chain: %v", err)
	}
	empty := newTestStore()
	if sh, note, err := LatestState(ctx, empty, vkey); err != nil || sh != (StateHead{}) || note != nil {
		t.Fatalf("LatestState of no chain: %+v, %v", sh, err)
	}
}

func FuzzOpenStateEntry(f *testing.F) {
	ss, vkey := stateSigner(f)
	b, _ := ss.Sign(StateEntry{Seq: 1, Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Kind: StateHold, Target: testObject})
	f.Add(b)
	b, _ = ss.Sign(StateEntry{Seq: 9, Prev: HashState(b), Time: time.Date(2026, 12, 1, 0, 0, 0, 1, time.UTC), Kind: StateUnfreeze, Target: testPrincipal})
	f.Add(b)
	f.Add([]byte(stateHeader + "\n1\n-\n2026-12-01T00:00:00Z\nhold " + testObject + "\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resigns(t, b, func(b []byte) (StateEntry, error) { return OpenStateEntry(b, vkey) }, ss.Sign)
	})
}

func FuzzParseStateText(f *testing.F) {
	f.Add(stateHeader + "\n1\n-\n2026-12-01T00:00:00Z\nhold " + testObject + "\n")
	f.Add(stateHeader + "\n2\n" + HashState(nil).String() + "\n2026-12-01T00:00:00.5Z\nfreeze " + testPrincipal + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseStateText(s)
		if err != nil {
			return
		}
		if got := e.text(); got != s {
			t.Fatalf("parse then format changed the text:\n%q\n%q", s, got)
		}
	})
}

func FuzzParseWitness(f *testing.F) {
	f.Add(FormatLogHead("abc", 3))
	f.Add(FormatStateHead(3, HashState(nil)))
	f.Fuzz(func(t *testing.T, s string) {
		if log, n, err := ParseLogHead(s); err == nil && FormatLogHead(log, n) != s {
			t.Fatalf("log head %q does not round-trip", s)
		}
		if n, h, err := ParseStateHead(s); err == nil && FormatStateHead(n, h) != s {
			t.Fatalf("state head %q does not round-trip", s)
		}
	})
}
