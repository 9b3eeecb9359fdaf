package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	kek := seededKEK("test:kek-1", "one")
	md := testMD("vault", "object")
	md.Canary = true
	md.Created = time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("JST", 9*3600))
	rec, k, err := Seal(ctx, kek, md)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) > MaxRecordLen {
		t.Fatalf("record is %d bytes", len(rec))
	}
	got, k2, err := Open(ctx, kek, md.VaultID, md.ObjectID, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !mdEqual(got, md) {
		t.Fatalf("metadata round trip: got %+v want %+v", got, md)
	}
	if got.Created.Location() != time.UTC || got.Expires.Location() != time.UTC {
		t.Error("Open must return times in UTC")
	}
	if k.key != k2.key || k.commit != k2.commit || k.vaultID != k2.vaultID || k.objectID != k2.objectID {
		t.Fatal("Open returned a different key than Seal")
	}
	if id, err := PeekKEKID(rec); err != nil || id != kek.ID() {
		t.Fatalf("PeekKEKID = %q, %v", id, err)
	}
}

// mdEqual compares Metadata, times by instant.
func mdEqual(a, b Metadata) bool {
	return a.VaultID == b.VaultID && a.ObjectID == b.ObjectID && a.Kind == b.Kind &&
		a.ContentType == b.ContentType && a.Size == b.Size && a.Created.Equal(b.Created) &&
		a.Expires.Equal(b.Expires) && bytes.Equal(a.SubjectMAC, b.SubjectMAC) &&
		a.Canary == b.Canary && a.LegalHold == b.LegalHold
}

func TestSealFreshKeys(t *testing.T) {
	kek := seededKEK("test:kek-1", "one")
	md := testMD("v", "o")
	seen := map[[32]byte]bool{}
	for range 50 {
		_, k, err := Seal(context.Background(), kek, md)
		if err != nil {
			t.Fatal(err)
		}
		if seen[k.key] || k.key == ([32]byte{}) {
			t.Fatal("Seal reused or zero data key")
		}
		seen[k.key] = true
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	ptSeg := segmentSize - tagLen
	first := ptSeg - totalHeaderLen // plaintext bytes in the first segment
	sizes := []int{
		0, 1, 2,
		first - 1, first, first + 1, // the first segment is shorter by the headers
		segmentSize - 1, segmentSize, segmentSize + 1,
		first + ptSeg - 1, first + ptSeg, first + ptSeg + 1,
		3*segmentSize + 17,
		5 << 20,
	}
	if !testing.Short() {
		sizes = append(sizes, 25<<20)
	}
	k := fixedKey(t, 1, id16("v"), id16("o"))
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			streamRoundTrip(t, k, int64(n))
		})
	}
}

// streamRoundTrip encrypts n pseudo-random bytes through a pipe into the
// decrypter, never holding the object in memory, and compares hashes.
func streamRoundTrip(t *testing.T, k *Key, n int64) {
	pr, pw := io.Pipe()
	src := io.LimitReader(rand.NewChaCha8([32]byte{9}), n)
	inHash := sha256.New()
	var ctLen countWriter
	done := make(chan error, 1)
	go func() {
		w, err := k.Encrypt(io.MultiWriter(pw, &ctLen))
		if err == nil {
			_, err = io.Copy(w, io.TeeReader(src, inHash))
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	r, err := k.Decrypt(pr)
	if err != nil {
		t.Fatal(err)
	}
	outHash := sha256.New()
	m, err := io.Copy(outHash, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m != n || !bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
		t.Fatalf("got %d bytes, want %d (or content differs)", m, n)
	}
	if int64(ctLen) != PayloadSize(n) {
		t.Fatalf("payload is %d bytes, PayloadSize says %d", ctLen, PayloadSize(n))
	}
	// The stream ends cleanly and stays ended.
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func TestPayloadSize(t *testing.T) {
	k := fixedKey(t, 2, id16("v"), id16("o"))
	// Exhaustive over small segments (cheap) for many sizes, and at the real size.
	for _, seg := range []int{totalHeaderLen + tagLen + 1, 128, 1000, segmentSize} {
		for n := 0; n < 4*seg+3; n += 1 + n/7 {
			ct := encryptBytes(t, k, plaintext(n, 3), seg)
			if got := payloadSize(int64(n), seg); got != int64(len(ct)) {
				t.Fatalf("seg %d n %d: payloadSize %d, actual %d", seg, n, got, len(ct))
			}
			out, err := decryptAll(k, ct, seg)
			if err != nil || !bytes.Equal(out, plaintext(n, 3)) {
				t.Fatalf("seg %d n %d: round trip failed: %v", seg, n, err)
			}
		}
	}
	for _, n := range []int64{-1, math.MinInt64, math.MaxInt64, math.MaxInt64 - 100} {
		if got := PayloadSize(n); got != -1 {
			t.Errorf("PayloadSize(%d) = %d, want -1", n, got)
		}
	}
	if got := PayloadSize(0); got != int64(totalHeaderLen+tagLen) {
		t.Errorf("PayloadSize(0) = %d", got)
	}
}

func TestReseal(t *testing.T) {
	ctx := context.Background()
	kek1 := seededKEK("test:kek-1", "one")
	kek2 := seededKEK("test:kek-2", "two")
	md := testMD("v", "o")
	rec, k, err := Seal(ctx, kek1, md)
	if err != nil {
		t.Fatal(err)
	}
	pt := plaintext(1000, 4)
	ct := encryptBytes(t, k, pt, segmentSize)

	// Legal hold under the same KEK, then rotation to another KEK.
	md.LegalHold = true
	rec2, err := Reseal(ctx, kek1, md, k)
	if err != nil {
		t.Fatal(err)
	}
	rec3, err := Reseal(ctx, kek2, md, k)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := PeekKEKID(rec3); id != kek2.ID() {
		t.Fatalf("PeekKEKID after rotation = %q", id)
	}
	for i, c := range []struct {
		rec []byte
		kek *testKEK
	}{{rec2, kek1}, {rec3, kek2}} {
		got, k2, err := Open(ctx, c.kek, md.VaultID, md.ObjectID, c.rec)
		if err != nil {
			t.Fatal(i, err)
		}
		if !got.LegalHold || !mdEqual(got, md) {
			t.Fatalf("%d: metadata not updated", i)
		}
		if out, err := decryptAll(k2, ct, segmentSize); err != nil || !bytes.Equal(out, pt) {
			t.Fatalf("%d: resealed key does not open the payload: %v", i, err)
		}
	}
	// The old record still opens under the old KEK (the caller replaces it).
	if _, _, err := Open(ctx, kek1, md.VaultID, md.ObjectID, rec); err != nil {
		t.Fatal(err)
	}
	// Reseal refuses metadata for another object.
	other := md
	other.ObjectID = id16("other")
	if _, err := Reseal(ctx, kek1, other, k); !errors.Is(err, ErrInvalidMetadata) {
		t.Fatalf("Reseal with another object ID: %v", err)
	}
	other = md
	other.VaultID = id16("other")
	if _, err := Reseal(ctx, kek1, other, k); !errors.Is(err, ErrInvalidMetadata) {
		t.Fatalf("Reseal with another vault ID: %v", err)
	}
}

func TestInvalidMetadata(t *testing.T) {
	kek := seededKEK("test:kek-1", "one")
	base := testMD("v", "o")
	cases := []struct {
		name string
		edit func(*Metadata)
	}{
		{"kind too long", func(m *Metadata) { m.Kind = strings.Repeat("k", MaxKindLen+1) }},
		{"content type too long", func(m *Metadata) { m.ContentType = strings.Repeat("c", MaxContentTypeLen+1) }},
		{"negative size", func(m *Metadata) { m.Size = -1 }},
		{"zero created", func(m *Metadata) { m.Created = time.Time{} }},
		{"zero expires", func(m *Metadata) { m.Expires = time.Time{} }},
		{"expires after 2262", func(m *Metadata) { m.Expires = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"short subject MAC", func(m *Metadata) { m.SubjectMAC = make([]byte, 31) }},
		{"long subject MAC", func(m *Metadata) { m.SubjectMAC = make([]byte, 33) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			md := base
			c.edit(&md)
			if _, _, err := Seal(context.Background(), kek, md); !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("Seal: %v, want ErrInvalidMetadata", err)
			}
		})
	}
	// Boundaries that must be accepted.
	md := base
	md.Kind = strings.Repeat("k", MaxKindLen)
	md.ContentType = strings.Repeat("c", MaxContentTypeLen)
	md.Size = math.MaxInt64
	md.Created = time.Unix(0, math.MinInt64)
	md.Expires = time.Unix(0, math.MaxInt64)
	md.SubjectMAC = nil
	rec, _, err := Seal(context.Background(), kek, md)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Open(context.Background(), kek, md.VaultID, md.ObjectID, rec)
	if err != nil || !mdEqual(got, md) {
		t.Fatalf("boundary metadata: %v", err)
	}
}

func TestBadKEKID(t *testing.T) {
	md := testMD("v", "o")
	for _, id := range []string{"", strings.Repeat("x", MaxKEKIDLen+1)} {
		kek := seededKEK(id, "one")
		if _, _, err := Seal(context.Background(), kek, md); err == nil {
			t.Errorf("Seal accepted a KEK ID of %d bytes", len(id))
		}
	}
	kek := seededKEK(strings.Repeat("x", MaxKEKIDLen), "one")
	rec, _, err := Seal(context.Background(), kek, md)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(context.Background(), kek, md.VaultID, md.ObjectID, rec); err != nil {
		t.Fatal(err)
	}
}

// TestRecordSizeHidesMetadata: a canary, a held object, a long or short kind
// all give records of one size (the subject MAC may differ; it does not).
func TestRecordSizeHidesMetadata(t *testing.T) {
	kek := seededKEK("test:kek-1", "one")
	variants := []func(*Metadata){
		func(*Metadata) {},
		func(m *Metadata) { m.Canary = true },
		func(m *Metadata) { m.LegalHold = true },
		func(m *Metadata) { m.Canary, m.LegalHold = true, true },
		func(m *Metadata) { m.Kind, m.ContentType = "", "" },
		func(m *Metadata) { m.Kind = strings.Repeat("p", MaxKindLen) },
		func(m *Metadata) { m.SubjectMAC = nil },
		func(m *Metadata) { m.Size = 0 },
	}
	size := -1
	for i, v := range variants {
		md := testMD("v", "o")
		v(&md)
		rec, _, err := Seal(context.Background(), kek, md)
		if err != nil {
			t.Fatal(err)
		}
		if size == -1 {
			size = len(rec)
		} else if len(rec) != size {
			t.Fatalf("variant %d: record is %d bytes, others %d", i, len(rec), size)
		}
	}
}

func TestDestroy(t *testing.T) {
	kek, md, _, k := sealOne(t)
	k.Destroy()
	if k.key != ([32]byte{}) {
		t.Fatal("Destroy left key bytes")
	}
	if _, err := k.Encrypt(io.Discard); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Encrypt after Destroy: %v", err)
	}
	if _, err := k.Decrypt(bytes.NewReader(nil)); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Decrypt after Destroy: %v", err)
	}
	if _, err := Reseal(context.Background(), kek, md, k); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Reseal after Destroy: %v", err)
	}
	k.Destroy() // idempotent
	var zero Key
	if _, err := zero.Encrypt(io.Discard); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Encrypt with a zero Key: %v", err)
	}
	var nilKey *Key
	nilKey.Destroy()
	if _, err := nilKey.Encrypt(io.Discard); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Encrypt on nil Key: %v", err)
	}
}

func TestKeyRedacted(t *testing.T) {
	k := fixedKey(t, 0xAB, id16("v"), id16("o"))
	type holder struct {
		K *Key
		V Key
	}
	forbidden := []string{"ab", "AB", "171", "0xab"} // the key byte in hex and decimal
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p"} {
		for _, arg := range []any{k, *k, holder{k, *k}, []*Key{k}} {
			out := fmt.Sprintf(verb, arg)
			if verb == "%p" {
				continue // prints an address only
			}
			if !strings.Contains(out, "REDACTED") {
				t.Errorf("%s of %T = %q, no REDACTED", verb, arg, out)
			}
			for _, f := range forbidden {
				if strings.Contains(out, f) {
					t.Errorf("%s of %T leaks %q: %q", verb, arg, f, out)
				}
			}
		}
	}
	if s := k.String() + k.GoString() + fmt.Sprint(k) + fmt.Sprintln(*k); strings.Contains(s, "ab") || strings.Contains(s, "171") {
		t.Errorf("String/GoString leak: %q", s)
	}
}

// failKEK fails every call with an error that is not kms.ErrDecrypt.
type failKEK struct{ *testKEK }

var errKMSDown = errors.New("kms unreachable")

func (failKEK) Decrypt(context.Context, []byte, []byte) ([]byte, error) { return nil, errKMSDown }

func TestOpenKEKOutageIsNotTampering(t *testing.T) {
	kek, md, rec, _ := sealOne(t)
	_, _, err := Open(context.Background(), failKEK{kek}, md.VaultID, md.ObjectID, rec)
	if !errors.Is(err, errKMSDown) || errors.Is(err, ErrTampered) {
		t.Fatalf("KEK outage: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = Open(ctx, kek, md.VaultID, md.ObjectID, rec)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTampered) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if _, _, err := Seal(ctx, kek, md); !errors.Is(err, context.Canceled) {
		t.Fatalf("Seal with cancelled ctx: %v", err)
	}
}

// errReader yields data then fails with err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

var errDisk = errors.New("disk on fire")

func TestDecryptIOErrorIsNotTampering(t *testing.T) {
	k := fixedKey(t, 3, id16("v"), id16("o"))
	ct := encryptBytes(t, k, plaintext(3*segmentSize, 5), segmentSize)
	for _, cut := range []int{0, 10, payloadHeaderLen, totalHeaderLen - 1, totalHeaderLen + 5, segmentSize + 100, len(ct) - 1} {
		r, err := k.Decrypt(&errReader{data: ct[:cut], err: errDisk})
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if !errors.Is(err, errDisk) || errors.Is(err, ErrTampered) {
			t.Errorf("cut %d: %v, want the I/O error", cut, err)
		}
	}
}

func TestDecryptErrorsAreSticky(t *testing.T) {
	k := fixedKey(t, 3, id16("v"), id16("o"))
	pt := plaintext(100, 6)
	ct := encryptBytes(t, k, pt, segmentSize)
	ct[len(ct)-1] ^= 1 // the last (only) segment fails
	r, err := k.Decrypt(bytes.NewReader(ct))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	for i := range 3 {
		n, err := r.Read(buf)
		if n != 0 || !errors.Is(err, ErrTampered) {
			t.Fatalf("Read %d = %d, %v; want 0, ErrTampered", i, n, err)
		}
	}
}

// failWriter accepts limit bytes, then fails.
type failWriter struct{ limit int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errDisk
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestEncryptErrors(t *testing.T) {
	k := fixedKey(t, 4, id16("v"), id16("o"))
	if _, err := k.Encrypt(&failWriter{limit: 3}); !errors.Is(err, errDisk) {
		t.Fatalf("header write failure: %v", err)
	}
	if _, err := k.Encrypt(&failWriter{limit: payloadHeaderLen + 3}); !errors.Is(err, errDisk) {
		t.Fatalf("Tink header write failure: %v", err)
	}
	w, err := k.Encrypt(&failWriter{limit: totalHeaderLen + 10})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(make([]byte, 3*segmentSize))
	if !errors.Is(err, errDisk) {
		t.Fatalf("segment write failure: %v", err)
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, errDisk) {
		t.Fatalf("Write after failure: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errDisk) {
		t.Fatalf("Close after failure: %v", err)
	}
	w, err = k.Encrypt(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	kek, md, rec, k := sealOne(t)
	pt := plaintext(2*segmentSize+5, 7)
	ct := encryptBytes(t, k, pt, segmentSize)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, k2, err := Open(ctx, kek, md.VaultID, md.ObjectID, rec)
			if err != nil {
				t.Error(err)
				return
			}
			for _, kk := range []*Key{k, k2} {
				if out, err := decryptAll(kk, ct, segmentSize); err != nil || !bytes.Equal(out, pt) {
					t.Errorf("goroutine %d: %v", i, err)
				}
				var buf countWriter
				w, err := kk.Encrypt(&buf)
				if err == nil {
					_, err = w.Write(pt[:i*100])
				}
				if err == nil {
					err = w.Close()
				}
				if err != nil || int64(buf) != PayloadSize(int64(i*100)) {
					t.Errorf("goroutine %d: encrypt: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
}
