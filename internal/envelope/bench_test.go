package envelope

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"testing"
)

var benchSizes = []int{4 << 10, 256 << 10, 1 << 20, 5 << 20}

var benchSegments = []int{4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkPayload encrypts and then decrypts one object per op (the bytes
// flow twice; SetBytes counts the object once, like BenchmarkRawGCM) for
// each candidate segment size. The production one is segmentSize.
func BenchmarkPayload(b *testing.B) {
	for _, seg := range benchSegments {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("seg=%s/size=%s", sizeName(seg), sizeName(n)), func(b *testing.B) {
				benchPayload(b, seg, n)
			})
		}
	}
}

func benchPayload(b *testing.B, seg, n int) {
	k := fixedKey(b, 7, id16("v"), id16("o"))
	pt := plaintext(n, 1)
	var ct bytes.Buffer
	ct.Grow(int(payloadSize(int64(n), seg)))
	b.SetBytes(int64(n))
	b.ReportAllocs()
	cpu := startCPU(b, int64(n))
	defer cpu.stop()
	for b.Loop() {
		ct.Reset()
		w, err := k.encrypt(&ct, seg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(pt); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		r, err := k.decrypt(bytes.NewReader(ct.Bytes()), seg)
		if err != nil {
			b.Fatal(err)
		}
		if m, err := io.Copy(io.Discard, r); err != nil || m != int64(n) {
			b.Fatal(m, err)
		}
	}
}

// BenchmarkRawGCM is the physical limit: one AES-256-GCM Seal and Open of
// the whole object into a reused buffer, no streaming, no key derivation.
func BenchmarkRawGCM(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("size="+sizeName(n), func(b *testing.B) {
			key := make([]byte, 32)
			blk, _ := aes.NewCipher(key)
			g, _ := cipher.NewGCM(blk)
			nonce := make([]byte, g.NonceSize())
			pt := plaintext(n, 1)
			ct := make([]byte, 0, n+g.Overhead())
			out := make([]byte, 0, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			cpu := startCPU(b, int64(n))
			defer cpu.stop()
			for b.Loop() {
				ct = g.Seal(ct[:0], nonce, pt, nil)
				var err error
				if out, err = g.Open(out[:0], nonce, ct, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeal and BenchmarkOpen measure the key record with an in-process
// KEK (a remote KMS adds a round trip).
func BenchmarkSeal(b *testing.B) {
	kek := seededKEK("test:bench", "bench")
	md := testMD("v", "o")
	b.ReportAllocs()
	for b.Loop() {
		_, k, err := Seal(context.Background(), kek, md)
		if err != nil {
			b.Fatal(err)
		}
		k.Destroy()
	}
}

func BenchmarkOpen(b *testing.B) {
	kek := seededKEK("test:bench", "bench")
	md := testMD("v", "o")
	rec, k, err := Seal(context.Background(), kek, md)
	if err != nil {
		b.Fatal(err)
	}
	k.Destroy()
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		_, k, err := Open(context.Background(), kek, md.VaultID, md.ObjectID, rec)
		if err != nil {
			b.Fatal(err)
		}
		k.Destroy()
	}
}
