package token

import (
	"slices"
	"testing"
	"time"
)

// TestKeyIDAndRetire: a token names the key that sealed it; a sealer of an
// older keyset does not know a key rotated in since; Retire removes
// exactly the chosen non-primary keys and the tokens they sealed stop
// opening.
func TestKeyIDAndRetire(t *testing.T) {
	h, err := NewKeyset()
	if err != nil {
		t.Fatal(err)
	}
	old := newSealer(t, h, testVault)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Claims{ID: NewID(), ObjectID: [16]byte{1}, Principal: "r", Purpose: "p", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	tok0, err := old.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	ids := KeyIDs(h)
	if id, ok := KeyID(tok0); !ok || len(ids) != 1 || id != ids[0] {
		t.Fatalf("KeyID %v %v, keyset %v", id, ok, ids)
	}
	h2, err := Rotate(h)
	if err != nil {
		t.Fatal(err)
	}
	cur := newSealer(t, h2, testVault)
	tok1, err := cur.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	if old.KnowsKey(tok1) || !cur.KnowsKey(tok0) || !cur.KnowsKey(tok1) {
		t.Fatal("KnowsKey wrong across a rotation")
	}
	ids2 := KeyIDs(h2)
	if len(ids2) != 2 || ids2[1] != ids[0] || slices.Contains(ids, ids2[0]) {
		t.Fatalf("rotated keyset %v (was %v): want the new key primary, first", ids2, ids)
	}
	h3, err := Retire(h2, func(uint32) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if got := KeyIDs(h3); len(got) != 1 || got[0] != ids2[0] {
		t.Fatalf("after retiring all: %v, want only the primary", got)
	}
	retired := newSealer(t, h3, testVault)
	if _, err := retired.Open(tok0); err == nil {
		t.Fatal("a token of a retired key still opens")
	}
	if _, err := retired.Open(tok1); err != nil {
		t.Fatalf("token of the primary: %v", err)
	}
	if _, ok := KeyID("idv1_"); ok {
		t.Fatal("KeyID of a stub")
	}
}
