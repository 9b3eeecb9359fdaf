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
	tok, _ := s.Seal(c)
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
	tok, err := s.Seal(sampleClaims())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenRotated opens a token of a non-primary key in a keyset of
// three keys: Tink picks the key by its ID prefix, so this should cost the
// same as BenchmarkOpen.
func BenchmarkOpenRotated(b *testing.B) {
	h, err := NewKeyset()
	if err != nil {
		b.Fatal(err)
	}
	tok, err := newSealer(b, h, testVault).Seal(sampleClaims())
	if err != nil {
		b.Fatal(err)
	}
	for range 2 {
		if h, err = Rotate(h); err != nil {
			b.Fatal(err)
		}
	}
	s := newSealer(b, h, testVault)
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenForged is the cost of refusing a well-formed token that does
// not authenticate (what a guessing attacker makes the server pay).
func BenchmarkOpenForged(b *testing.B) {
	s := freshSealer(b)
	tok, err := s.Seal(sampleClaims())
	if err != nil {
		b.Fatal(err)
	}
	forged := tok[:len(tok)-10] + strings.Repeat("A", 10)
	b.SetBytes(int64(len(forged)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(forged); err == nil {
			b.Fatal("forged token opened")
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
