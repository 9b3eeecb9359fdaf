package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary strings to Open. Open must not panic, must fail
// only with ErrInvalid and zero claims, and whatever opens must be valid
// claims that seal and open again to the same value.
func FuzzOpen(f *testing.F) {
	s := newSealer(f, loadKeyset(f, "test-keyset-rotated.json"), testVault)
	for _, g := range goldenTokens {
		f.Add(g.tok)
		f.Add(g.tok[:len(g.tok)/2])
		f.Add(g.tok + "=")
		f.Add("idv2_" + strings.TrimPrefix(g.tok, Prefix))
	}
	f.Add("")
	f.Add(Prefix)
	f.Add(Prefix + "AAAA")
	f.Add(Prefix + strings.Repeat("_", 200))
	f.Add(Prefix + strings.Repeat("A", MaxLen))
	f.Add("idv1_\n\r")
	f.Fuzz(func(t *testing.T, tok string) {
		KeyID(tok) // never panics
		c, err := s.Open(tok)
		if err == nil && !s.KnowsKey(tok) {
			t.Fatal("a token that opens names a key the sealer does not know")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if c != (Claims{}) {
				t.Fatal("claims returned with an error")
			}
			if body := strings.TrimPrefix(tok, Prefix); len(body) >= 8 && strings.Contains(err.Error(), body) {
				t.Fatal("error contains the token")
			}
			return
		}
		if len(tok) > MaxLen || !strings.HasPrefix(tok, Prefix) {
			t.Fatal("opened a token of the wrong shape")
		}
		if c != normalized(c) || c.IssuedAt.Location() != time.UTC {
			t.Fatal("opened claims are not normalized")
		}
		tok2, err := s.Seal(c)
		if err != nil {
			t.Fatalf("opened claims do not seal: %v", err)
		}
		c2, err := s.Open(tok2)
		if err != nil || c2 != c {
			t.Fatalf("re-sealed claims: %+v, %v; want %+v", c2, err, c)
		}
	})
}

// FuzzClaimsDecode checks that the claims decoder never panics and is
// canonical: every byte string that decodes is exactly the encoding of what
// it decodes to.
func FuzzClaimsDecode(f *testing.F) {
	for _, c := range seedClaims() {
		b, err := appendClaims(nil, c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), 0))
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{0xff}, maxClaimsLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeClaims(b)
		if err != nil {
			if c != (Claims{}) {
				t.Fatal("claims returned with an error")
			}
			return
		}
		re, err := appendClaims(nil, c)
		if err != nil {
			t.Fatalf("decoded claims do not encode: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("not canonical:\n  in %x\n out %x", b, re)
		}
		c2, err := decodeClaims(re)
		if err != nil || c2 != c {
			t.Fatalf("decode(encode(c)) = %+v, %v; want %+v", c2, err, c)
		}
	})
}

// FuzzClaimsEncode builds claims from arbitrary fields: whatever encodes
// must decode to the same claims at millisecond precision, within the
// length bound, and the same value must be refused by Seal exactly when it
// is refused by the encoder.
func FuzzClaimsEncode(f *testing.F) {
	for _, c := range seedClaims() {
		f.Add(c.ID[:], c.ObjectID[:], c.Principal, c.Purpose,
			c.IssuedAt.Unix(), int64(c.IssuedAt.Nanosecond()), c.ExpiresAt.Unix(), int64(c.ExpiresAt.Nanosecond()))
	}
	f.Add([]byte{}, []byte{}, "", "", int64(0), int64(0), int64(0), int64(0))
	f.Add([]byte{1}, []byte{1}, "\xff", "p", int64(1), int64(0), int64(-1), int64(0))
	f.Add([]byte{1}, []byte{1}, "r", "p", int64(253402300799), int64(998999999), int64(253402300799), int64(999999999))
	s := freshSealer(f)
	f.Fuzz(func(t *testing.T, id, obj []byte, principal, purpose string, iatSec, iatNsec, expSec, expNsec int64) {
		var c Claims
		copy(c.ID[:], id)
		copy(c.ObjectID[:], obj)
		c.Principal, c.Purpose = principal, purpose
		c.IssuedAt, c.ExpiresAt = time.Unix(iatSec, iatNsec), time.Unix(expSec, expNsec)
		b, err := appendClaims(nil, c)
		_, sealErr := s.Seal(c)
		if (err == nil) != (sealErr == nil) {
			t.Fatalf("encoder and Seal disagree: %v / %v", err, sealErr)
		}
		if err != nil {
			if !errors.Is(sealErr, ErrBadClaims) {
				t.Fatalf("Seal error does not wrap ErrBadClaims: %v", sealErr)
			}
			return
		}
		if len(b) < minClaimsLen || len(b) > maxClaimsLen {
			t.Fatalf("encoding of %d bytes", len(b))
		}
		got, err := decodeClaims(b)
		if err != nil {
			t.Fatalf("encoded claims do not decode: %v", err)
		}
		if got != normalized(c) {
			t.Fatalf("decode(encode(c)) = %+v, want %+v", got, normalized(c))
		}
	})
}

func seedClaims() []Claims {
	base := sampleClaims()
	minC := base
	minC.Principal, minC.Purpose = "a", "p"
	maxC := base
	maxC.Principal = strings.Repeat("審", 85) + "x"
	maxC.Purpose = strings.Repeat("u", MaxPurposeLen)
	edge := base
	edge.IssuedAt = time.UnixMilli(1)
	edge.ExpiresAt = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
	return []Claims{base, minC, maxC, edge}
}
