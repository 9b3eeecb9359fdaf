package envelope

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// segIndex is the index of the ciphertext segment holding payload byte off
// (the headers count as part of segment 0's span).
func segIndex(off, seg int) int {
	if off < seg {
		return 0
	}
	return 1 + (off-seg)/seg
}

// ptBefore is how many plaintext bytes segments 0..i-1 hold: the most a
// reader may release before failing in segment i.
func ptBefore(i, seg int) int {
	if i == 0 {
		return 0
	}
	first := seg - tagLen - totalHeaderLen
	return first + (i-1)*(seg-tagLen)
}

// checkRejected decrypts payload and requires a typed failure, no panic, and
// no plaintext beyond the authenticated segments before segment bad.
func checkRejected(t *testing.T, what string, k *Key, payload, pt []byte, bad int) {
	t.Helper()
	var out []byte
	var err error
	if msg := catchPanic(func() { out, err = decryptAll(k, payload, segmentSize) }); msg != "" {
		t.Fatalf("%s: panic: %s", what, msg)
	}
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("%s: err = %v, want ErrTampered", what, err)
	}
	if limit := ptBefore(bad, segmentSize); len(out) > limit || !bytes.Equal(out, pt[:len(out)]) {
		t.Fatalf("%s: released %d bytes (limit %d) or bytes that are not the plaintext", what, len(out), limit)
	}
}

func TestTamperRecordEveryBit(t *testing.T) {
	ctx := context.Background()
	kek, md, rec, _ := sealOne(t)
	counts := map[error]int{}
	for i := range len(rec) * 8 {
		bad := bytes.Clone(rec)
		bad[i/8] ^= 1 << (i % 8)
		var err error
		if msg := catchPanic(func() { _, _, err = Open(ctx, kek, md.VaultID, md.ObjectID, bad) }); msg != "" {
			t.Fatalf("bit %d: panic: %s", i, msg)
		}
		if !rejected(err) {
			t.Fatalf("bit %d: Open = %v, want a typed rejection", i, err)
		}
		for _, s := range []error{ErrTampered, ErrUnsupportedVersion, ErrWrongKEK} {
			if errors.Is(err, s) {
				counts[s]++
			}
		}
		// The version byte yields ErrUnsupportedVersion, the KEK ID ErrWrongKEK.
		switch off := i / 8; {
		case off == len(recordMagic) && !errors.Is(err, ErrUnsupportedVersion):
			t.Fatalf("bit %d in the version byte: %v", i, err)
		case off > len(recordMagic)+1 && off < len(recordMagic)+2+len(kek.ID()) && !errors.Is(err, ErrWrongKEK):
			t.Fatalf("bit %d in the KEK ID: %v", i, err)
		}
	}
	t.Logf("%d bits flipped: %v", len(rec)*8, counts)
}

func TestTamperRecordTruncateExtend(t *testing.T) {
	ctx := context.Background()
	kek, md, rec, _ := sealOne(t)
	var cases [][]byte
	for n := range len(rec) {
		cases = append(cases, rec[:n])
	}
	for _, extra := range []int{1, 16, MaxRecordLen} {
		cases = append(cases, append(bytes.Clone(rec), make([]byte, extra)...))
	}
	for i, bad := range cases {
		var err error
		if msg := catchPanic(func() { _, _, err = Open(ctx, kek, md.VaultID, md.ObjectID, bad) }); msg != "" {
			t.Fatalf("case %d: panic: %s", i, msg)
		}
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("case %d (len %d): %v, want ErrTampered", i, len(bad), err)
		}
	}
}

func TestTamperPayloadEveryBit(t *testing.T) {
	k := fixedKey(t, 5, id16("v"), id16("o"))
	pt := plaintext(100, 8)
	ct := encryptBytes(t, k, pt, segmentSize)
	for i := range len(ct) * 8 {
		bad := bytes.Clone(ct)
		bad[i/8] ^= 1 << (i % 8)
		checkRejected(t, "bit "+itoa(i), k, bad, pt, segIndex(i/8, segmentSize))
	}
}

// A multi-segment payload with one bit flipped in each segment's first,
// middle and last byte: the segments before it are released, nothing after.
func TestTamperPayloadPerSegment(t *testing.T) {
	k := fixedKey(t, 5, id16("v"), id16("o"))
	pt := plaintext(3*segmentSize+1000, 9)
	ct := encryptBytes(t, k, pt, segmentSize)
	var offs []int
	for s := 0; s*segmentSize < len(ct); s++ {
		start, end := s*segmentSize, min((s+1)*segmentSize, len(ct))
		offs = append(offs, start, (start+end)/2, end-1)
	}
	for _, off := range offs {
		bad := bytes.Clone(ct)
		bad[off] ^= 0x80
		checkRejected(t, "offset "+itoa(off), k, bad, pt, segIndex(off, segmentSize))
	}
}

func TestTamperPayloadTruncate(t *testing.T) {
	k := fixedKey(t, 6, id16("v"), id16("o"))
	pt := plaintext(3*segmentSize-500, 10) // ~3 segments
	ct := encryptBytes(t, k, pt, segmentSize)
	if segIndex(len(ct)-1, segmentSize) != 2 {
		t.Fatalf("want a 3-segment payload, got %d", segIndex(len(ct)-1, segmentSize)+1)
	}
	check := func(n int) {
		bad := ct[:n]
		last := 0
		if n > 0 {
			last = segIndex(n-1, segmentSize) // the segment that is cut (or ends without its last flag)
		}
		checkRejected(t, "truncate at "+itoa(n), k, bad, pt, last)
	}
	for n := range min(4096, len(ct)) {
		check(n)
	}
	for n := max(0, len(ct)-4096); n < len(ct); n++ {
		check(n)
	}
	// Every segment boundary: a complete prefix of segments is not a payload.
	for n := segmentSize; n < len(ct); n += segmentSize {
		check(n)
	}
}

func TestTamperPayloadExtend(t *testing.T) {
	for _, size := range []int{0, 100, segmentSize - tagLen - totalHeaderLen, 2*segmentSize + 7} {
		k := fixedKey(t, 7, id16("v"), id16("o"))
		pt := plaintext(size, 11)
		ct := encryptBytes(t, k, pt, segmentSize)
		lastSeg := segIndex(len(ct)-1, segmentSize)
		for _, extra := range []int{1, 16, 4096} {
			for _, fill := range []byte{0, 0xff} {
				bad := append(bytes.Clone(ct), bytes.Repeat([]byte{fill}, extra)...)
				checkRejected(t, "append "+itoa(extra), k, bad, pt, lastSeg)
			}
		}
		// Appending a copy of the last segment, or of the whole payload.
		checkRejected(t, "append last segment", k, append(bytes.Clone(ct), ct[lastSeg*segmentSize:]...), pt, lastSeg)
		checkRejected(t, "append payload", k, append(bytes.Clone(ct), ct...), pt, lastSeg)
	}
}

func TestTamperPayloadReorder(t *testing.T) {
	k := fixedKey(t, 8, id16("v"), id16("o"))
	pt := plaintext(4*segmentSize, 12)
	ct := encryptBytes(t, k, pt, segmentSize)
	// Swap segments 1 and 2 (both full): segment 1 fails.
	bad := bytes.Clone(ct)
	copy(bad[segmentSize:], ct[2*segmentSize:3*segmentSize])
	copy(bad[2*segmentSize:], ct[segmentSize:2*segmentSize])
	checkRejected(t, "swap segments", k, bad, pt, 1)
	// Drop segment 2.
	bad = append(bytes.Clone(ct[:2*segmentSize]), ct[3*segmentSize:]...)
	checkRejected(t, "drop segment", k, bad, pt, 2)
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	return string(b[n:])
}
