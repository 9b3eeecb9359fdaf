package token

import (
	"os"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// testVault is the vault ID of the frozen test vectors.
var testVault = [16]byte{0x76, 0x61, 0x75, 0x6c, 0x74, 0x2d, 0x69, 0x64, 0x2d, 0x66, 0x6f, 0x72, 0x2d, 0x74, 0x65, 0x73}

// loadKeyset reads a cleartext keyset committed under testdata. These keys
// exist only to freeze test vectors; they protect nothing.
func loadKeyset(tb testing.TB, name string) *keyset.Handle {
	tb.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func newSealer(tb testing.TB, h *keyset.Handle, vault [16]byte) *Sealer {
	tb.Helper()
	s, err := NewSealer(h, vault)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// freshSealer returns a Sealer on a new random keyset.
func freshSealer(tb testing.TB) *Sealer {
	tb.Helper()
	h, err := NewKeyset()
	if err != nil {
		tb.Fatal(err)
	}
	return newSealer(tb, h, testVault)
}

var t0 = time.Date(2026, 4, 20, 9, 30, 0, 0, time.UTC)

func sampleClaims() Claims {
	return Claims{
		ID:        [16]byte{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f, 0x90},
		ObjectID:  [16]byte{0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0},
		Principal: "reviewer-7@trust-and-safety.example",
		Purpose:   "age-verification-review",
		IssuedAt:  t0,
		ExpiresAt: t0.Add(60 * time.Second),
	}
}

// normalized is what Open returns for claims that Seal accepted.
func normalized(c Claims) Claims {
	c.IssuedAt = time.UnixMilli(c.IssuedAt.UnixMilli()).UTC()
	c.ExpiresAt = time.UnixMilli(c.ExpiresAt.UnixMilli()).UTC()
	return c
}

// flipBits calls f with a copy of b for every single-bit flip of b.
func flipBits(b []byte, f func(i int, bit uint, mod []byte)) {
	mod := make([]byte, len(b))
	for i := range b {
		for bit := uint(0); bit < 8; bit++ {
			copy(mod, b)
			mod[i] ^= 1 << bit
			f(i, bit, mod)
		}
	}
}
