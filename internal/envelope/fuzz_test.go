package envelope

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the committed fuzz seed corpora in testdata/fuzz")

// fuzzSmallSeg is a small segment size, so that FuzzDecrypt reaches
// multi-segment paths with inputs of a few hundred bytes.
const fuzzSmallSeg = 128

func fuzzKey(t testing.TB) *Key {
	c := goldenCases()[1]
	return fixedKey(t, c.keyByte, c.md.VaultID, c.md.ObjectID)
}

// writeSeed writes one committed seed in the `go test fuzz v1` format.
func writeSeed(t testing.TB, target, name string, args ...any) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", a)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", a)
		default:
			t.Fatalf("unsupported seed type %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func recordSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, c := range goldenCases() {
		rec, err := os.ReadFile(goldenPath(c.name, "record"))
		if err != nil {
			t.Fatal(err)
		}
		seeds["golden-"+c.name] = rec
	}
	rec := seeds["golden-empty-canary"]
	seeds["empty"] = nil
	seeds["magic-only"] = []byte(recordMagic)
	seeds["header-only"] = rec[:len(recordMagic)+2+len(goldenKEKID)+2]
	seeds["version-2"] = append([]byte(recordMagic), 2)
	seeds["zero-blob-len"] = append(bytes.Clone(rec[:len(recordMagic)+2+len(goldenKEKID)]), 0, 0)
	seeds["huge-blob-len"] = append(bytes.Clone(rec[:len(recordMagic)+2+len(goldenKEKID)]), 0xff, 0xff, 1, 2, 3)
	return seeds
}

type payloadSeed struct {
	payload  []byte
	smallSeg bool
}

func payloadSeeds(t testing.TB) map[string]payloadSeed {
	k := fuzzKey(t)
	seeds := map[string]payloadSeed{}
	for _, n := range []int{0, 1, 100} {
		seeds[fmt.Sprintf("real-seg-%d", n)] = payloadSeed{encryptBytes(t, k, plaintext(n, 30), segmentSize), false}
	}
	for _, n := range []int{0, 1, 30, 100, 250, 1000} {
		seeds[fmt.Sprintf("small-seg-%d", n)] = payloadSeed{encryptBytes(t, k, plaintext(n, 31), fuzzSmallSeg), true}
	}
	seeds["empty"] = payloadSeed{[]byte{}, false}
	seeds["header-only"] = payloadSeed{seeds["real-seg-0"].payload[:payloadHeaderLen], false}
	return seeds
}

// TestWriteFuzzSeeds regenerates the committed seed corpora (only with
// -update-fuzz-seeds; the seeds are inputs, not frozen vectors).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateFuzzSeeds {
		t.Skip("use -update-fuzz-seeds")
	}
	for name, rec := range recordSeeds(t) {
		writeSeed(t, "FuzzOpenRecord", name, rec, false)
	}
	for name, s := range payloadSeeds(t) {
		writeSeed(t, "FuzzDecrypt", name, s.payload, s.smallSeg)
	}
	for i, md := range metadataVariants()[:40] {
		writeSeed(t, "FuzzDecodeMetadata", fmt.Sprintf("variant-%02d", i), appendMetadata(nil, &md))
	}
}

// FuzzOpenRecord feeds arbitrary records to Open (and PeekKEKID): no panic,
// only typed rejections, and anything accepted is a consistent record.
func FuzzOpenRecord(f *testing.F) {
	for _, rec := range recordSeeds(f) {
		f.Add(rec, false)
		f.Add(rec, true)
	}
	ctx := context.Background()
	kek := newTestKEK(goldenKEKID, goldenKEKKey)
	cases := goldenCases()
	f.Fuzz(func(t *testing.T, rec []byte, second bool) {
		want := cases[0].md
		if second {
			want = cases[1].md
		}
		id, peekErr := PeekKEKID(rec)
		md, k, err := Open(ctx, kek, want.VaultID, want.ObjectID, rec)
		if err != nil {
			if !rejected(err) {
				t.Fatalf("untyped error: %v", err)
			}
			if peekErr != nil && !errors.Is(err, peekErr) {
				t.Fatalf("PeekKEKID says %v, Open %v", peekErr, err)
			}
			return
		}
		if peekErr != nil || id != goldenKEKID {
			t.Fatalf("Open accepted a record PeekKEKID refuses: %v", peekErr)
		}
		if md.VaultID != want.VaultID || md.ObjectID != want.ObjectID || md.validate() != nil {
			t.Fatal("Open accepted a record for another object or with invalid metadata")
		}
		again, err := Reseal(ctx, kek, md, k)
		if err != nil {
			t.Fatal(err)
		}
		md2, _, err := Open(ctx, kek, want.VaultID, want.ObjectID, again)
		if err != nil || !mdEqual(md, md2) || len(again) != len(rec) {
			t.Fatalf("reseal round trip: %v", err)
		}
	})
}

// FuzzDecrypt feeds arbitrary payloads to Decrypt: no panic, only
// ErrTampered, no more plaintext than ciphertext, and anything accepted has
// exactly the length Encrypt would give its plaintext.
func FuzzDecrypt(f *testing.F) {
	for _, s := range payloadSeeds(f) {
		f.Add(s.payload, s.smallSeg)
	}
	k := fuzzKey(f)
	f.Fuzz(func(t *testing.T, payload []byte, smallSeg bool) {
		seg := segmentSize
		if smallSeg {
			seg = fuzzSmallSeg
		}
		r, err := k.decrypt(bytes.NewReader(payload), seg)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		out, err := io.ReadAll(io.LimitReader(r, int64(len(payload))+1))
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("untyped error: %v", err)
			}
			if len(out) >= len(payload) {
				t.Fatal("more plaintext than ciphertext")
			}
			return
		}
		if int64(len(payload)) != payloadSize(int64(len(out)), seg) {
			t.Fatalf("accepted a %d-byte payload for %d bytes of plaintext", len(payload), len(out))
		}
	})
}

// FuzzDecodeMetadata: decodeMetadata accepts only canonical encodings, so
// whatever it accepts re-encodes to the same bytes and is valid metadata.
func FuzzDecodeMetadata(f *testing.F) {
	for _, md := range metadataVariants()[:40] {
		f.Add(appendMetadata(nil, &md))
	}
	f.Add(make([]byte, metadataLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		md, ok := decodeMetadata(b)
		if !ok {
			return
		}
		if err := md.validate(); err != nil {
			t.Fatalf("decoded invalid metadata: %v", err)
		}
		if !bytes.Equal(appendMetadata(nil, &md), b) {
			t.Fatal("encode(decode(b)) != b")
		}
	})
}
