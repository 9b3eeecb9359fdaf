package keysinprod

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// Run with:
//
//	go test -run '^$' -bench . -benchtime 1x ./examples/keysinprod/   (rewrap)
//	go test -run '^$' -bench PutRedeem -benchtime 2s ./examples/keysinprod/
//
// from the repository root (MINIO_BIN for the MinIO cases).

var quota = vault.Quota{Documents: 1 << 30, Redemptions: 1 << 30, Burst: 1 << 30}

// kekPair returns two KEKs of one kind: "local" (kms.Local keysets with
// the default argon2id parameters) or "localkms" (keys on local-kms).
func kekPair(b *testing.B, kind string) (kms.KEK, kms.KEK) {
	ctx := context.Background()
	switch kind {
	case "local":
		dir := b.TempDir()
		var out [2]kms.KEK
		for i := range out {
			k, err := kms.CreateLocal(filepath.Join(dir, fmt.Sprint("kek", i)), []byte("bench passphrase"), kms.LocalOptions{})
			if err != nil {
				b.Fatal(err)
			}
			out[i] = k
		}
		return out[0], out[1]
	case "localkms":
		srv := localkms.Start(b)
		var out [2]kms.KEK
		for i := range out {
			uri, err := srv.CreateKey(ctx)
			if err != nil {
				b.Fatal(err)
			}
			k, err := kms.Open(ctx, uri, kms.OpenOptions{Openers: []kms.Opener{srv.Opener()}})
			if err != nil {
				b.Fatal(err)
			}
			out[i] = k
		}
		return out[0], out[1]
	}
	b.Fatal("unknown KEK kind")
	return nil, nil
}

func newStore(b *testing.B, kind string) store.Store {
	switch kind {
	case "fs":
		st, err := fsstore.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return st
	case "minio":
		srv := miniotest.Server(b)
		st, err := s3store.New(context.Background(), srv.Client(b), srv.NewBucket(b, false), s3store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	b.Fatal("unknown store kind")
	return nil
}

// fill puts n small documents, 8 at a time.
func fill(b *testing.B, v *vault.Vault, n int) {
	ctx := context.Background()
	scan := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 1020)...)
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	for range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			_, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "s"})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewrap measures one Rewrap of n key records from one KEK to
// another of the same kind: records per second, and the peak of the live
// heap during the run above the heap before it (sampled after a GC every
// 500 records), which must not grow with n.
func BenchmarkRewrap(b *testing.B) {
	for _, st := range []string{"fs", "minio"} {
		for _, kk := range []string{"local", "localkms"} {
			for _, n := range []int{1000, 4000} {
				if st == "minio" && n > 1000 {
					continue // the flatness is shown on fs; MinIO gives the rate
				}
				b.Run(fmt.Sprintf("%s/%s/n=%d", st, kk, n), func(b *testing.B) {
					ctx := context.Background()
					from, to := kekPair(b, kk)
					s := newStore(b, st)
					v, err := vault.Open(ctx, vault.Config{Store: s, KEK: from, DecryptKEKs: []kms.KEK{to}, Quota: quota})
					if err != nil {
						b.Fatal(err)
					}
					defer v.Close(ctx)
					fill(b, v, n)
					var ms runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&ms)
					base, peak := ms.HeapAlloc, ms.HeapAlloc
					b.ResetTimer()
					start := time.Now()
					rep, err := v.Rewrap(ctx, from, to, vault.Actor{Principal: "bench"}, vault.RewrapOptions{Progress: func(p vault.RewrapProgress) {
						if p.Done%500 == 0 {
							runtime.GC()
							runtime.ReadMemStats(&ms)
							peak = max(peak, ms.HeapAlloc)
						}
					}})
					el := time.Since(start)
					b.StopTimer()
					if err != nil || rep.Rewrapped != n {
						b.Fatalf("%+v %v", rep, err)
					}
					b.ReportMetric(float64(n)/el.Seconds(), "records/s")
					b.ReportMetric(float64(peak-base)/1024, "peak-heap-KiB")
				})
			}
		}
	}
}

// BenchmarkPutRedeem measures Put of a 100 KiB document, and Grant plus
// Redeem of one, with the KEK local (kms.Local) or remote (local-kms over
// HTTP on 127.0.0.1), on fsstore.
func BenchmarkPutRedeem(b *testing.B) {
	ctx := context.Background()
	scan := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 100<<10-4)...)
	for _, kk := range []string{"local", "localkms"} {
		k, _ := kekPair(b, kk)
		kek := &countingKEK{KEK: k}
		st, err := fsstore.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek, Quota: quota})
		if err != nil {
			b.Fatal(err)
		}
		var ids []string
		b.Run("put/"+kk, func(b *testing.B) {
			kek.calls.Store(0)
			defer func() { b.ReportMetric(float64(kek.calls.Load())/float64(b.N), "kek-calls/op") }()
			for b.Loop() {
				info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "s"})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, info.ID)
			}
		})
		b.Run("redeem/"+kk, func(b *testing.B) {
			kek.calls.Store(0)
			defer func() { b.ReportMetric(float64(kek.calls.Load())/float64(b.N), "kek-calls/op") }()
			i := 0
			for b.Loop() {
				g, err := v.Grant(ctx, ids[i%len(ids)], vault.Access{Principal: "r", Purpose: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "r"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
				i++
			}
		})
		v.Close(ctx)
	}
}

// countingKEK counts Encrypt and Decrypt calls.
type countingKEK struct {
	kms.KEK
	calls atomic.Int64
}

func (c *countingKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.KEK.Encrypt(ctx, pt, ad)
}

func (c *countingKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.KEK.Decrypt(ctx, ct, ad)
}

// BenchmarkKEKRoundTrip measures one Decrypt of a wrapped data key: an
// in-process AES-GCM for the local keyset, an HTTP request for local-kms.
func BenchmarkKEKRoundTrip(b *testing.B) {
	ctx := context.Background()
	for _, kk := range []string{"local", "localkms"} {
		kek, _ := kekPair(b, kk)
		dk := make([]byte, 64)
		ct, err := kek.Encrypt(ctx, dk, []byte("ad"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decrypt/"+kk, func(b *testing.B) {
			for b.Loop() {
				if _, err := kek.Decrypt(ctx, ct, []byte("ad")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
