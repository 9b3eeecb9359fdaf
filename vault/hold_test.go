package vault

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzParseHoldMarker: the hold-marker parser never panics, and accepts
// only the exact bytes the vault would write for the parsed fields under
// its own key (a marker cannot be forged or re-targeted at another object
// or sequence number).
func FuzzParseHoldMarker(f *testing.F) {
	sys, err := newSystemKeys()
	if err != nil {
		f.Fatal(err)
	}
	var id objectID
	copy(id[:], "0123456789abcdef")
	at := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	good := sys.holdMarker(id, 1, true, at)
	f.Add(good, uint64(1))
	f.Add(good, uint64(2))
	f.Add(good[:len(good)-1], uint64(1))
	f.Add(append(bytes.Clone(good), 0), uint64(1))
	f.Add(sys.holdMarker(id, 7, false, at), uint64(7))
	f.Add(make([]byte, holdMarkerLen), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		held, ok := sys.parseHoldMarker(id, seq, b)
		if !ok {
			return
		}
		at := time.Unix(0, int64(binary.BigEndian.Uint64(b[10:18])))
		if want := sys.holdMarker(id, seq, held, at); !bytes.Equal(b, want) {
			t.Fatalf("accepted a marker that is not the canonical one for (seq %d, held %v)", seq, held)
		}
		var other objectID
		if sys.parseHoldMarkerOK(other, seq, b) {
			t.Fatal("a marker of one object verified for another")
		}
	})
}

func (s *systemKeys) parseHoldMarkerOK(id objectID, seq uint64, b []byte) bool {
	_, ok := s.parseHoldMarker(id, seq, b)
	return ok
}
