package token

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// goldenClaimsHex is the frozen encoding of sampleClaims. Changing the
// encoding means a new version byte and a new token prefix, never an edit
// here.
const goldenClaimsHex = "01" +
	"a1b2c3d4e5f60718293a4b5c6d7e8f90" + // ID
	"0f1e2d3c4b5a69788796a5b4c3d2e1f0" + // ObjectID
	"0000019daa39adc0" + // IssuedAt 2026-04-20T09:30:00Z in Unix ms
	"0000019daa3a9820" + // ExpiresAt, 60 s later
	"0023" + "7265766965776572 2d374074727573742d616e642d7361666574792e6578616d706c65" +
	"0017" + "6167652d766572696669636174696f6e2d726576696577"

func goldenClaims(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(goldenClaimsHex, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClaimsGolden(t *testing.T) {
	want := goldenClaims(t)
	got, err := appendClaims(nil, sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
	}
	c, err := decodeClaims(want)
	if err != nil {
		t.Fatal(err)
	}
	if c != sampleClaims() {
		t.Fatalf("decode = %+v", c)
	}
}

func TestClaimsDecodeRejects(t *testing.T) {
	good := goldenClaims(t)
	// Offsets in the sample encoding.
	const (
		offID    = 1
		offObj   = 17
		offIat   = 33
		offExp   = 41
		offPLen  = 49
		offP     = 51
		pLen     = 35
		offULen  = offP + pLen
		offU     = offULen + 2
		uLen     = 23
		totalLen = offU + uLen
	)
	if len(good) != totalLen {
		t.Fatalf("test setup: golden length %d, want %d", len(good), totalLen)
	}
	edit := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	putMs := func(off int, ms int64) []byte {
		return edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], uint64(ms)); return b })
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version 0", edit(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2", edit(func(b []byte) []byte { b[0] = 2; return b })},
		{"zero ID", edit(func(b []byte) []byte { clear(b[offID : offID+16]); return b })},
		{"zero object ID", edit(func(b []byte) []byte { clear(b[offObj : offObj+16]); return b })},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"principal length zero", edit(func(b []byte) []byte {
			// Drop the principal and declare it empty.
			return append(append(b[:offPLen:offPLen], 0, 0), good[offULen:]...)
		})},
		{"principal length past the end", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offPLen:], 0x0100); return b })},
		{"principal length 257 with bytes present", func() []byte {
			c := sampleClaims()
			c.Principal = strings.Repeat("p", 256)
			b, _ := appendClaims(nil, c)
			b = append(b[:offP+256:offP+256], append([]byte{'p'}, b[offP+256:]...)...)
			binary.BigEndian.PutUint16(b[offPLen:], 257)
			return b
		}()},
		{"principal length 0xffff", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offPLen:], 0xffff); return b })},
		{"principal length one short", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offPLen:], pLen-1); return b })},
		{"purpose length one long", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offULen:], uLen+1); return b })},
		{"purpose length one short", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offULen:], uLen-1); return b })},
		{"purpose length 129", func() []byte {
			c := sampleClaims()
			c.Purpose = strings.Repeat("u", 128)
			b, _ := appendClaims(nil, c)
			b = append(b, 'u')
			binary.BigEndian.PutUint16(b[offULen:], 129)
			return b
		}()},
		{"empty purpose", append(bytes.Clone(good[:offULen]), 0, 0)},
		{"principal invalid UTF-8", edit(func(b []byte) []byte { b[offP] = 0xff; return b })},
		{"principal overlong NUL", edit(func(b []byte) []byte { b[offP], b[offP+1] = 0xc0, 0x80; return b })},
		{"purpose invalid UTF-8", edit(func(b []byte) []byte { b[offU+uLen-1] = 0x80; return b })},
		{"purpose surrogate", edit(func(b []byte) []byte { copy(b[offU:], "\xed\xa0\x80"); return b })},
		{"IssuedAt zero", putMs(offIat, 0)},
		{"IssuedAt negative", putMs(offIat, -1)},
		{"ExpiresAt max int64", putMs(offExp, 1<<63-1)},
		{"ExpiresAt year 10000", putMs(offExp, 253402300800000)},
		{"ExpiresAt equals IssuedAt", putMs(offExp, t0.UnixMilli())},
		{"ExpiresAt before IssuedAt", putMs(offExp, t0.UnixMilli()-1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeClaims(tc.b)
			if err == nil {
				t.Fatalf("decoded %+v", c)
			}
			var ec errClaims
			if !errors.As(err, &ec) {
				t.Fatalf("err = %T", err)
			}
			if c != (Claims{}) {
				t.Fatal("claims returned with an error")
			}
		})
	}
	for i := range len(good) {
		if _, err := decodeClaims(good[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded", i)
		}
	}
}

// TestClaimsEveryBitFlip checks that a single-bit change either fails to
// decode or decodes to different claims that re-encode to exactly the
// changed bytes: no two encodings share one meaning.
func TestClaimsEveryBitFlip(t *testing.T) {
	good := goldenClaims(t)
	orig := sampleClaims()
	flipBits(good, func(i int, bit uint, mod []byte) {
		c, err := decodeClaims(mod)
		if err != nil {
			return
		}
		if c == orig {
			t.Fatalf("byte %d bit %d: same claims from different bytes", i, bit)
		}
		re, err := appendClaims(nil, c)
		if err != nil || !bytes.Equal(re, mod) {
			t.Fatalf("byte %d bit %d: not canonical", i, bit)
		}
	})
}

func TestTimesNotBeforeUnixEpochRoundTrip(t *testing.T) {
	c := sampleClaims()
	c.IssuedAt = time.UnixMilli(1).In(time.FixedZone("X", -12*3600))
	b, err := appendClaims(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeClaims(b)
	if err != nil || !got.IssuedAt.Equal(c.IssuedAt) {
		t.Fatalf("got %v, %v", got.IssuedAt, err)
	}
}
