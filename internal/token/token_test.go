package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
)

func TestRoundTrip(t *testing.T) {
	s := freshSealer(t)
	tokyo := time.FixedZone("JST", 9*3600)
	// 85 three-byte runes + 1 byte = 256 bytes exactly.
	uni256 := strings.Repeat("審", 85) + "x"
	if len(uni256) != MaxPrincipalLen {
		t.Fatalf("test setup: len %d", len(uni256))
	}
	cases := []struct {
		name string
		edit func(*Claims)
	}{
		{"sample", func(*Claims) {}},
		{"min lengths", func(c *Claims) { c.Principal, c.Purpose = "a", "p" }},
		{"max lengths", func(c *Claims) {
			c.Principal = strings.Repeat("P", MaxPrincipalLen)
			c.Purpose = strings.Repeat("q", MaxPurposeLen)
		}},
		{"unicode principal at max length", func(c *Claims) { c.Principal = uni256 }},
		{"unicode purpose", func(c *Claims) { c.Purpose = "年齢確認 🔞 vérification" }},
		{"one millisecond TTL", func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(time.Millisecond) }},
		{"sub-millisecond times are truncated", func(c *Claims) {
			c.IssuedAt = t0.Add(123456789 * time.Nanosecond)
			c.ExpiresAt = t0.Add(time.Minute + 999999*time.Nanosecond)
		}},
		{"non-UTC zone comes back as UTC", func(c *Claims) {
			c.IssuedAt = t0.In(tokyo)
			c.ExpiresAt = t0.Add(time.Hour).In(tokyo)
		}},
		{"monotonic clock reading is dropped", func(c *Claims) {
			now := time.Now()
			c.IssuedAt, c.ExpiresAt = now, now.Add(time.Minute)
		}},
		{"earliest time", func(c *Claims) {
			c.IssuedAt = time.UnixMilli(1)
			c.ExpiresAt = time.UnixMilli(2)
		}},
		{"latest time", func(c *Claims) {
			c.IssuedAt = time.Date(9999, 12, 31, 23, 59, 59, 998e6, time.UTC)
			c.ExpiresAt = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
		}},
		{"all-ones IDs", func(c *Claims) {
			c.ID = [16]byte{0: 0xff, 15: 0xff}
			c.ObjectID = [16]byte{15: 1}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleClaims()
			tc.edit(&c)
			tok, err := s.Seal(c)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			got, err := s.Open(tok)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			want := normalized(c)
			if got != want {
				t.Fatalf("Open(Seal(c)) = %+v, want %+v", got, want)
			}
			if got.IssuedAt.Location() != time.UTC || got.ExpiresAt.Location() != time.UTC {
				t.Fatal("times not in UTC")
			}
			// Sealing is randomized: the same claims never give the same token.
			tok2, err := s.Seal(c)
			if err != nil {
				t.Fatal(err)
			}
			if tok2 == tok {
				t.Fatal("two seals of the same claims gave the same token")
			}
		})
	}
}

// TestTokenShape checks the prefix, the URL-safe alphabet and the length
// bound on tokens of every claims size.
func TestTokenShape(t *testing.T) {
	s := freshSealer(t)
	for _, n := range []int{1, 2, 3, 4, 100, 255, 256} {
		for _, m := range []int{1, 2, 3, 128} {
			c := sampleClaims()
			c.Principal, c.Purpose = strings.Repeat("p", n), strings.Repeat("u", m)
			tok, err := s.Seal(c)
			if err != nil {
				t.Fatal(err)
			}
			body, ok := strings.CutPrefix(tok, Prefix)
			if !ok {
				t.Fatalf("token does not start with %q", Prefix)
			}
			for i := 0; i < len(body); i++ {
				if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", rune(body[i])) {
					t.Fatalf("byte %q at %d outside [A-Za-z0-9_-]", body[i], i)
				}
			}
			if len(tok) > 700 || len(tok) > MaxLen {
				t.Fatalf("token of %d bytes", len(tok))
			}
		}
	}
}

// TestNothingReadable asserts that no claim appears in the token, in clear
// or in any of the three base64 alignments.
func TestNothingReadable(t *testing.T) {
	s := freshSealer(t)
	c := sampleClaims()
	secrets := map[string][]byte{
		"principal": []byte(c.Principal),
		"purpose":   []byte(c.Purpose),
		"ID":        c.ID[:],
		"ObjectID":  c.ObjectID[:],
	}
	for range 20 {
		tok, err := s.Seal(c)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, Prefix))
		if err != nil {
			t.Fatal(err)
		}
		for name, sec := range secrets {
			if bytes.Contains(raw, sec) || strings.Contains(tok, string(sec)) {
				t.Fatalf("%s appears in clear", name)
			}
			for _, a := range base64Alignments(sec) {
				if strings.Contains(tok, a) {
					t.Fatalf("%s appears base64-encoded", name)
				}
			}
		}
	}
}

// base64Alignments returns, for each of the three offsets at which sec may
// start inside a base64 stream, the characters that depend on sec alone.
func base64Alignments(sec []byte) []string {
	var out []string
	for off := range 3 {
		buf := append(make([]byte, off), sec...)
		e := base64.RawURLEncoding.EncodeToString(buf)
		// Drop the characters that mix pad bytes in (the first off>0
		// group) and the last, partial character.
		start := 0
		if off > 0 {
			start = 4
		}
		end := len(buf) / 3 * 4
		if end > start {
			out = append(out, e[start:end])
		}
	}
	return out
}

func TestTamperEveryBit(t *testing.T) {
	s := freshSealer(t)
	tok, err := s.Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, Prefix))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	flipBits(raw, func(i int, bit uint, mod []byte) {
		n++
		c, err := s.Open(Prefix + base64.RawURLEncoding.EncodeToString(mod))
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d bit %d flipped: err = %v, want ErrInvalid", i, bit, err)
		}
		if c != (Claims{}) {
			t.Fatalf("byte %d bit %d flipped: claims returned with an error", i, bit)
		}
	})
	if n != 8*len(raw) {
		t.Fatalf("flipped %d bits, want %d", n, 8*len(raw))
	}
	// Every character of the string, replaced by every other alphabet character.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := len(Prefix); i < len(tok); i++ {
		for _, r := range alphabet {
			if byte(r) == tok[i] {
				continue
			}
			mod := tok[:i] + string(r) + tok[i+1:]
			if _, err := s.Open(mod); !errors.Is(err, ErrInvalid) {
				t.Fatalf("char %d replaced: err = %v, want ErrInvalid", i, err)
			}
		}
	}
}

func TestTruncateEverywhere(t *testing.T) {
	s := freshSealer(t)
	tok, err := s.Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(tok) {
		if _, err := s.Open(tok[:i]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d chars: err = %v, want ErrInvalid", i, err)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, Prefix))
	for i := range len(raw) {
		if _, err := s.Open(Prefix + base64.RawURLEncoding.EncodeToString(raw[:i])); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ciphertext truncated to %d bytes: err = %v, want ErrInvalid", i, err)
		}
	}
	for _, ext := range [][]byte{{0}, {0, 0, 0}, raw[:16]} {
		long := append(append([]byte{}, raw...), ext...)
		if _, err := s.Open(Prefix + base64.RawURLEncoding.EncodeToString(long)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ciphertext extended by %d bytes: err = %v, want ErrInvalid", len(ext), err)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	h, err := NewKeyset()
	if err != nil {
		t.Fatal(err)
	}
	s := newSealer(t, h, testVault)
	good, err := s.Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimPrefix(good, Prefix)

	otherVault := testVault
	otherVault[15] ^= 1
	fromOtherVault, err := newSealer(t, h, otherVault).Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	fromOtherKeyset, err := freshSealer(t).Seal(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	// A token whose last character carries non-zero padding bits: the same
	// bytes under a lax decoder, refused by the strict one. The principal's
	// length is chosen so that the ciphertext is not a multiple of 3 bytes.
	nonCanonical := ""
	for n := 1; n <= 3 && nonCanonical == ""; n++ {
		c := sampleClaims()
		c.Principal += strings.Repeat("x", n)
		tok, err := s.Seal(c)
		if err != nil {
			t.Fatal(err)
		}
		if b := strings.TrimPrefix(tok, Prefix); len(b)%4 != 0 {
			const alph = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alph, b[len(b)-1])
			nonCanonical = tok[:len(tok)-1] + string(alph[last|1])
		}
	}

	cases := []struct {
		name, tok string
	}{
		{"empty", ""},
		{"prefix only", Prefix},
		{"prefix without underscore", "idv1" + body},
		{"wrong version prefix", "idv2_" + body},
		{"upper-case prefix", "IDV1_" + body},
		{"no prefix", body},
		{"doubled prefix", Prefix + good},
		{"garbled", Prefix + "this-is-not-a-token-at-all_but_it-is-long-enough-to-pass-the-length-check-and-then-some-more-characters-here-xyz"},
		{"short garbage", Prefix + "AAAA"},
		{"padding", good + "="},
		{"padding to a multiple of four", good + strings.Repeat("=", (4-len(body)%4)%4) + "===="},
		{"standard alphabet plus", good[:40] + "+" + good[41:]},
		{"standard alphabet slash", good[:40] + "/" + good[41:]},
		{"newline inside", good[:40] + "\n" + good[40:]},
		{"CR inside", good[:40] + "\r" + good[40:]},
		{"space inside", good[:40] + " " + good[40:]},
		{"trailing space", good + " "},
		{"NUL inside", good[:40] + "\x00" + good[40:]},
		{"non-ASCII inside", good[:40] + "é" + good[42:]},
		{"invalid UTF-8", good[:40] + "\xff" + good[41:]},
		{"one char more", good + "A"},
		{"oversized, valid alphabet", Prefix + strings.Repeat("A", MaxLen)},
		{"oversized by one byte", Prefix + strings.Repeat("A", MaxLen-len(Prefix)+1)},
		{"token repeated", good + body},
		{"other vault", fromOtherVault},
		{"other keyset", fromOtherKeyset},
	}
	if nonCanonical == "" {
		t.Fatal("test setup: sample token has no padding bits to set")
	}
	cases = append(cases, struct{ name, tok string }{"non-zero padding bits", nonCanonical})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Open(tc.tok)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if c != (Claims{}) {
				t.Fatal("claims returned with an error")
			}
			if len(tc.tok) > len(Prefix)+8 && strings.Contains(err.Error(), tc.tok[len(Prefix):len(Prefix)+8]) {
				t.Fatal("error contains part of the token")
			}
		})
	}
	// The good token still opens: the cases above failed for their own reason.
	if _, err := s.Open(good); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func TestRotation(t *testing.T) {
	old, err := NewKeyset()
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := Rotate(old)
	if err != nil {
		t.Fatal(err)
	}
	if old.Len() != 1 || rotated.Len() != 2 {
		t.Fatalf("keyset sizes %d, %d; want 1, 2 (Rotate must not modify its argument)", old.Len(), rotated.Len())
	}
	p0, _ := old.Primary()
	p1, _ := rotated.Primary()
	if p0.KeyID() == p1.KeyID() {
		t.Fatal("Rotate did not change the primary key")
	}
	oldS := newSealer(t, old, testVault)
	newS := newSealer(t, rotated, testVault)

	c := sampleClaims()
	tokOld, err := oldS.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	tokNew, err := newS.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := newS.Open(tokOld); err != nil || got != normalized(c) {
		t.Fatalf("token under the rotated-away key: %v", err)
	}
	if got, err := newS.Open(tokNew); err != nil || got != normalized(c) {
		t.Fatalf("token under the new primary: %v", err)
	}
	// The old keyset does not know the new key.
	if _, err := oldS.Open(tokNew); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old keyset opened a token of the new key: %v", err)
	}
	// Twice rotated: the first key still opens.
	twice, err := Rotate(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newSealer(t, twice, testVault).Open(tokOld); err != nil {
		t.Fatalf("token under a key rotated away twice: %v", err)
	}
	if _, err := Rotate(nil); err == nil {
		t.Fatal("Rotate(nil) succeeded")
	}
}

func TestSealRejects(t *testing.T) {
	s := freshSealer(t)
	cases := []struct {
		name string
		edit func(*Claims)
	}{
		{"zero ID", func(c *Claims) { c.ID = [16]byte{} }},
		{"zero object ID", func(c *Claims) { c.ObjectID = [16]byte{} }},
		{"empty principal", func(c *Claims) { c.Principal = "" }},
		{"principal too long", func(c *Claims) { c.Principal = strings.Repeat("p", MaxPrincipalLen+1) }},
		{"unicode principal one byte too long", func(c *Claims) { c.Principal = strings.Repeat("審", 85) + "xy" }},
		{"principal not UTF-8", func(c *Claims) { c.Principal = "rev\xffiewer" }},
		{"principal truncated rune", func(c *Claims) { c.Principal = "審"[:2] }},
		{"empty purpose", func(c *Claims) { c.Purpose = "" }},
		{"purpose too long", func(c *Claims) { c.Purpose = strings.Repeat("u", MaxPurposeLen+1) }},
		{"purpose not UTF-8", func(c *Claims) { c.Purpose = "\xc0\x80" }},
		{"zero IssuedAt", func(c *Claims) { c.IssuedAt = time.Time{} }},
		{"zero ExpiresAt", func(c *Claims) { c.ExpiresAt = time.Time{} }},
		{"ExpiresAt equals IssuedAt", func(c *Claims) { c.ExpiresAt = c.IssuedAt }},
		{"ExpiresAt before IssuedAt", func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }},
		{"ExpiresAt after IssuedAt by less than a millisecond", func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(999 * time.Microsecond) }},
		{"Unix epoch", func(c *Claims) { c.IssuedAt = time.Unix(0, 0) }},
		{"before 1970", func(c *Claims) { c.IssuedAt = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"year 10000", func(c *Claims) { c.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"far future", func(c *Claims) { c.ExpiresAt = time.Unix(1<<62, 0) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleClaims()
			tc.edit(&c)
			tok, err := s.Seal(c)
			if !errors.Is(err, ErrBadClaims) {
				t.Fatalf("err = %v, want ErrBadClaims", err)
			}
			if tok != "" {
				t.Fatal("token returned with an error")
			}
			if c.Principal != "" && strings.Contains(err.Error(), c.Principal) ||
				c.Purpose != "" && strings.Contains(err.Error(), c.Purpose) {
				t.Fatal("error contains a claim")
			}
		})
	}
}

func TestNewSealerRejects(t *testing.T) {
	h, err := NewKeyset()
	if err != nil {
		t.Fatal(err)
	}
	macKeyset, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		h     *keyset.Handle
		vault [16]byte
	}{
		{"nil keyset", nil, testVault},
		{"zero vault ID", h, [16]byte{}},
		{"MAC keyset", macKeyset, testVault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := NewSealer(tc.h, tc.vault); err == nil || s != nil {
				t.Fatalf("NewSealer = %v, %v; want an error", s, err)
			}
		})
	}
}

func TestSealerDoesNotPrintKey(t *testing.T) {
	s := newSealer(t, loadKeyset(t, "test-keyset-rotated.json"), testVault)
	const want = "token.Sealer{REDACTED}"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%q, sealer) = %q, want %q", verb, got, want)
		}
		wrapped := fmt.Sprintf(verb, struct{ S *Sealer }{s})
		if !strings.Contains(wrapped, "REDACTED") {
			t.Errorf("Sprintf(%q, struct{S *Sealer}) = %q: not redacted", verb, wrapped)
		}
	}
	if got := s.String(); got != want {
		t.Errorf("String() = %q", got)
	}
}

func TestConcurrent(t *testing.T) {
	s := freshSealer(t)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	toks := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				c := sampleClaims()
				c.ID = NewID()
				c.Purpose = fmt.Sprintf("w%d-%d", w, i)
				tok, err := s.Seal(c)
				if err != nil {
					errs <- err
					return
				}
				got, err := s.Open(tok)
				if err != nil || got != normalized(c) {
					errs <- fmt.Errorf("worker %d round %d: round trip failed: %v", w, i, err)
					return
				}
				toks[w] = append(toks[w], tok)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every token opens afterwards, and all are distinct.
	seen := map[string]bool{}
	for _, ts := range toks {
		for _, tok := range ts {
			if seen[tok] {
				t.Fatal("duplicate token")
			}
			seen[tok] = true
			if _, err := s.Open(tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != workers*rounds {
		t.Fatalf("%d tokens, want %d", len(seen), workers*rounds)
	}
}

func TestNewID(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 1000 {
		id := NewID()
		if id == ([16]byte{}) || seen[id] {
			t.Fatal("NewID returned a zero or repeated ID")
		}
		seen[id] = true
	}
}

func TestErrorsAreUTF8(t *testing.T) {
	// Error texts are fixed reasons; a sanity check that none echoes input bytes.
	s := freshSealer(t)
	_, err := s.Open(Prefix + "\xff\xfe" + strings.Repeat("A", 200))
	if !errors.Is(err, ErrInvalid) || !utf8.ValidString(err.Error()) {
		t.Fatalf("err = %q", err)
	}
}
