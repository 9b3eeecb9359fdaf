package kms

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// The unit a vault wraps: a 32-byte data key bound to 64 bytes of
// associated data (object ID and metadata).
var (
	benchDataKey = bytes.Repeat([]byte{0xd0}, 32)
	benchAD      = bytes.Repeat([]byte{0xad}, 64)
)

func benchKEKs(b *testing.B) map[string]KEK {
	path := filepath.Join(b.TempDir(), "kek.keyset")
	l, err := CreateLocal(path, testPassphrase, cheapOpts)
	if err != nil {
		b.Fatal(err)
	}
	return map[string]KEK{"Local": l, "FromAEAD": FromAEAD("bench://", newTinkAEAD(b))}
}

func BenchmarkEncrypt(b *testing.B) {
	benchEachKEK(b, func(ctx context.Context, k KEK, _ []byte) error {
		_, err := k.Encrypt(ctx, benchDataKey, benchAD)
		return err
	})
}

func BenchmarkDecrypt(b *testing.B) {
	benchEachKEK(b, func(ctx context.Context, k KEK, ct []byte) error {
		_, err := k.Decrypt(ctx, ct, benchAD)
		return err
	})
}

// benchEachKEK runs op on the data key (ct: its ciphertext under k) for
// each KEK of benchKEKs.
func benchEachKEK(b *testing.B, op func(ctx context.Context, k KEK, ct []byte) error) {
	for name, k := range benchKEKs(b) {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			ct := mustEncrypt(b, k, benchDataKey, benchAD)
			b.SetBytes(int64(len(benchDataKey)))
			b.ReportAllocs()
			for b.Loop() {
				if err := op(ctx, k, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenLocalDefault measures what the default argon2id parameters
// cost at startup (and per passphrase guess).
func BenchmarkOpenLocalDefault(b *testing.B) {
	path := filepath.Join(b.TempDir(), "kek.keyset")
	if _, err := CreateLocal(path, testPassphrase, LocalOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenLocal(path, testPassphrase); err != nil {
			b.Fatal(err)
		}
	}
}
