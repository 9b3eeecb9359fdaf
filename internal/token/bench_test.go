package token

import (
	"strings"
	"testing"
)

// Tokens are a few hundred bytes; SetBytes reports the token length so that
// MB/s compares across claims sizes.

func BenchmarkSeal(b *testing.B) {
	s := freshSealer(b)
	c := sampleClaims()
	tok := benchToken(b, s)
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := freshSealer(b)
	benchOpen(b, s, benchToken(b, s), true)
}

// BenchmarkOpenRotated opens a token of a non-primary key in a keyset of
// three keys: Tink picks the key by its ID prefix, so this should cost the
// same as BenchmarkOpen.
func BenchmarkOpenRotated(b *testing.B) {
	h, err := NewKeyset()
	if err != nil {
		b.Fatal(err)
	}
	tok := benchToken(b, newSealer(b, h, testVault))
	for range 2 {
		if h, err = Rotate(h); err != nil {
			b.Fatal(err)
		}
	}
	benchOpen(b, newSealer(b, h, testVault), tok, true)
}

// BenchmarkOpenForged is the cost of refusing a well-formed token that does
// not authenticate (what a guessing attacker makes the server pay).
func BenchmarkOpenForged(b *testing.B) {
	s := freshSealer(b)
	tok := benchToken(b, s)
	benchOpen(b, s, tok[:len(tok)-10]+strings.Repeat("A", 10), false)
}

// benchToken seals sampleClaims with s.
func benchToken(b *testing.B, s *Sealer) string {
	tok, err := s.Seal(sampleClaims())
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// benchOpen measures s.Open(tok), which must succeed when valid and fail
// when not.
func benchOpen(b *testing.B, s *Sealer, tok string, valid bool) {
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok); (err == nil) != valid {
			b.Fatalf("Open = %v, want valid %v", err, valid)
		}
	}
}

func BenchmarkClaimsDecode(b *testing.B) {
	enc, err := appendClaims(nil, sampleClaims())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeClaims(enc); err != nil {
			b.Fatal(err)
		}
	}
}
