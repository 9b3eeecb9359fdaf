package audit

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParseLease: parseLease never panics, and what it accepts marshals
// back to the same bytes.
func FuzzParseLease(f *testing.F) {
	var fr frontier
	for i := range 5 {
		fr.add(leafForTest(i))
	}
	l := lease{log: "abc", holder: "0123456789abcdef0123456789abcdef", expires: time.Date(2026, 4, 20, 9, 0, 0, 5, time.UTC), f: fr}
	f.Add(l.marshal())
	l.closing = true
	f.Add(l.marshal())
	l.closing, l.released = false, true
	f.Add(l.marshal())
	f.Add([]byte(leaseHeader + "\nabc\n0123456789abcdef0123456789abcdef\nreleased\n0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLease(b)
		if err != nil {
			return
		}
		if got := l.marshal(); !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n%q\n%q", b, got)
		}
	})
}

// FuzzParseHeads: ParseHeads and ParseWitness never panic, and every head
// ParseHeads returns verifies again on its own.
func FuzzParseHeads(f *testing.F) {
	skey, vkey := keys(f)
	st := newTestStore()
	buildLog(f, st, skey, logSpec{n: 3, batch: 1, checkpoints: []int64{1, 2}, final: true, logID: "a"})
	buildLog(f, st, skey, logSpec{n: 2, batch: 1, checkpoints: []int64{2}, logID: "b"})
	heads, err := Heads(f.Context(), st, vkey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(FormatHeads(heads))
	f.Add(heads[0].Note)
	f.Add([]byte(""))
	f.Add([]byte("\n\n"))
	ss, _ := stateSigner(f)
	entry, _ := ss.Sign(StateEntry{Seq: 1, Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Kind: StateHold, Target: testObject})
	f.Add(append(append(FormatHeads(heads), entry...), '\n'))
	f.Fuzz(func(t *testing.T, b []byte) {
		// ParseWitness: never panics; a state head it returns is that of
		// an entry that verifies on its own.
		if _, sh, err := ParseWitness(b, vkey); err == nil && sh.Length > 0 {
			if sh.Length < 1 || sh.Hash == (StateHash{}) {
				t.Fatalf("state head %+v", sh)
			}
		}
		hs, err := ParseHeads(b, vkey)
		if err != nil {
			return
		}
		for _, h := range hs {
			again, err := ParseHeads(append(bytes.Clone(h.Note), '\n'), vkey)
			if err != nil || len(again) != 1 || again[0].Tree != h.Tree {
				t.Fatalf("head %s does not parse alone: %v", h.Log, err)
			}
		}
	})
}

// leafForTest is a leaf hash for test frontiers.
func leafForTest(i int) (h [32]byte) {
	h[0], h[1] = byte(i), byte(i>>8)
	return h
}
