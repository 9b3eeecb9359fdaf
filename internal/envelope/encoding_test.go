package envelope

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// metadataVariants returns metadata that differ in one or two fields, with
// separators, empty strings, NULs and boundary lengths, including pairs whose
// naive concatenation would collide ("ab"+"" vs "a"+"b").
func metadataVariants() []Metadata {
	base := testMD("v", "o")
	var out []Metadata
	add := func(f func(*Metadata)) {
		m := base
		m.SubjectMAC = bytes.Clone(base.SubjectMAC)
		f(&m)
		out = append(out, m)
	}
	strs := []string{"", "a", "b", "ab", "ba", "a\x00", "\x00a", "\x00", "\x01", "a/b", "a;b", "a,b", "a|b",
		"a=b", "a:b", "a b", "/", ";", "\xff", strings.Repeat("z", MaxKindLen-1), strings.Repeat("z", MaxKindLen),
		"image/jpeg", "image/jpeg\x00", "image/jpeg;", "image", "/jpeg"}
	for _, k := range strs {
		for _, c := range strs {
			add(func(m *Metadata) { m.Kind, m.ContentType = k, c })
		}
	}
	add(func(m *Metadata) { m.ContentType = strings.Repeat("c", MaxContentTypeLen) })
	add(func(m *Metadata) { m.ContentType = strings.Repeat("c", MaxContentTypeLen-1) })
	for _, f := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		for _, mac := range [][]byte{nil, make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
			add(func(m *Metadata) { m.Canary, m.LegalHold, m.SubjectMAC = f[0], f[1], mac })
		}
	}
	for _, s := range []int64{0, 1, 255, 256, math.MaxInt64} {
		add(func(m *Metadata) { m.Size = s })
	}
	for _, ns := range []int64{math.MinInt64, -1, 0, 1, math.MaxInt64} {
		add(func(m *Metadata) { m.Created = time.Unix(0, ns) })
		add(func(m *Metadata) { m.Expires = time.Unix(0, ns) })
	}
	for _, id := range [][16]byte{{}, {1}, {15: 1}, id16("o")} {
		add(func(m *Metadata) { m.VaultID = id })
		add(func(m *Metadata) { m.ObjectID = id })
	}
	return out
}

func TestMetadataEncodingInjective(t *testing.T) {
	vs := metadataVariants()
	seen := map[string]int{}
	for i, md := range vs {
		if err := md.validate(); err != nil {
			t.Fatalf("variant %d invalid: %v", i, err)
		}
		enc := appendMetadata(nil, &md)
		if len(enc) != metadataLen {
			t.Fatalf("variant %d: encoding is %d bytes, want %d", i, len(enc), metadataLen)
		}
		dec, ok := decodeMetadata(enc)
		if !ok || !mdEqual(dec, md) {
			t.Fatalf("variant %d: decode(encode(x)) != x", i)
		}
		if !bytes.Equal(appendMetadata(nil, &dec), enc) {
			t.Fatalf("variant %d: encode(decode(e)) != e", i)
		}
		if j, dup := seen[string(enc)]; dup && !mdEqual(vs[j], md) {
			t.Fatalf("variants %d and %d differ but encode equally", j, i)
		}
		seen[string(enc)] = i
	}
	t.Logf("%d variants, %d distinct encodings", len(vs), len(seen))
}

func TestMetadataDecodeCanonical(t *testing.T) {
	md := testMD("v", "o")
	md.Kind, md.ContentType = "ab", "c"
	enc := appendMetadata(nil, &md)
	kindOff := 16 + 16 + 1 + 8 + 8 + 8
	ctOff := kindOff + 1 + MaxKindLen
	macOff := ctOff + 1 + MaxContentTypeLen
	bad := map[string]func([]byte) []byte{
		"short":                func(b []byte) []byte { return b[:len(b)-1] },
		"long":                 func(b []byte) []byte { return append(b, 0) },
		"unknown flag":         func(b []byte) []byte { b[32] |= 4; return b },
		"size over MaxInt64":   func(b []byte) []byte { b[33] |= 0x80; return b },
		"kind length over max": func(b []byte) []byte { b[kindOff] = MaxKindLen + 1; return b },
		"kind padding":         func(b []byte) []byte { b[kindOff+1+MaxKindLen-1] = 1; return b },
		"ctype length over":    func(b []byte) []byte { b[ctOff] = MaxContentTypeLen + 1; return b },
		"ctype padding":        func(b []byte) []byte { b[ctOff+5] = 'x'; return b },
		"mac length 31":        func(b []byte) []byte { b[macOff] = 31; return b },
		"mac length 33":        func(b []byte) []byte { b[macOff] = 33; return b },
	}
	for name, f := range bad {
		if _, ok := decodeMetadata(f(bytes.Clone(enc))); ok {
			t.Errorf("%s: decoded", name)
		}
	}
	// Kind "ab" with a shorter length is not the same as ("a", "b..."): a
	// length of 1 leaves 'b' in the padding, which is refused.
	b := bytes.Clone(enc)
	b[kindOff] = 1
	if _, ok := decodeMetadata(b); ok {
		t.Error("non-zero padding after a shortened length decoded")
	}
}

func TestADInjective(t *testing.T) {
	ids := [][16]byte{{}, {1}, {15: 1}, {0: '/', 1: '/'}, id16("a"), id16("b")}
	kekIDs := []string{"a", "ab", "a\x00", "\x00a", "a/b", "a:b", "local:1", "local:10",
		strings.Repeat("k", MaxKEKIDLen), strings.Repeat("k", MaxKEKIDLen-1)}
	seen := map[string]string{}
	check := func(ad []byte, desc string) {
		if prev, dup := seen[string(ad)]; dup {
			t.Fatalf("AD collision: %s and %s", prev, desc)
		}
		seen[string(ad)] = desc
	}
	for vi, v := range ids {
		for oi, o := range ids {
			for ki, k := range kekIDs {
				check(recordAD(v, o, k), "record "+itoa(vi)+"/"+itoa(oi)+"/"+itoa(ki))
			}
			check(payloadAD(v, o), "payload "+itoa(vi)+"/"+itoa(oi))
		}
	}
}
