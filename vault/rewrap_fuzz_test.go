package vault

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzSystemKeysetKEKID: the clear header of a wrapped keyset parses or
// fails with ErrTampered; what parses is bounded, and the canonical
// header of the ID parses back to it.
func FuzzSystemKeysetKEKID(f *testing.F) {
	f.Add(append(systemAD("local:0123456789abcdef"), 1, 2, 3))
	f.Add(systemAD("aws-kms://arn:aws:kms:eu-west-1:1:key/k"))
	f.Add([]byte("IDVS\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := systemKeysetKEKID(b)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if len(id) > 1024 || !bytes.Contains(b, []byte(id)) {
			t.Fatalf("parsed %q, not in the input", id)
		}
		if again, err := systemKeysetKEKID(systemAD(id)); err != nil || again != id {
			t.Fatalf("canonical header of %q parses as %q, %v", id, again, err)
		}
	})
}
