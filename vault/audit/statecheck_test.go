package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
)

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
