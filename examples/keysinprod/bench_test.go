package keysinprod

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
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
			out[i], _ = srv.NewKEK(b)
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
					v, err := vault.Open(ctx, vault.Config{Store: s, KEK: from, Storage: vault.StorageConfig{DecryptKEKs: []kms.KEK{to}}, Detection: vault.DetectionConfig{Quota: quota}})
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
					rep, err := v.Admin().Rewrap(ctx, from, to, vault.Actor{Principal: "bench"}, vault.RewrapOptions{Progress: func(p vault.RewrapProgress) {
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
// HTTP on 127.0.0.1), on fsstore. The two vaults are driven alternately,
// operation by operation, so that a shared machine's drift hits both
// alike; it reports the median of each and the remote/local ratios.
func BenchmarkPutRedeem(b *testing.B) {
	ctx := context.Background()
	scan := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 100<<10-4)...)
	kinds := []string{"local", "localkms"}
	vs := make([]*vault.Vault, len(kinds))
	keks := make([]*countingKEK, len(kinds))
	for i, kk := range kinds {
		k, _ := kekPair(b, kk)
		keks[i] = &countingKEK{KEK: k}
		st, err := fsstore.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		v, err := vault.Open(ctx, vault.Config{Store: st, KEK: keks[i], Detection: vault.DetectionConfig{Quota: quota}})
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close(ctx)
		vs[i] = v
	}
	put := make([][]time.Duration, len(kinds))
	redeem := make([][]time.Duration, len(kinds))
	ids := make([][]string, len(kinds))
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		for i, v := range vs {
			start := time.Now()
			info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "s"})
			if err != nil {
				b.Fatal(err)
			}
			put[i] = append(put[i], time.Since(start))
			ids[i] = append(ids[i], info.ID)
		}
		for i, v := range vs {
			start := time.Now()
			g, err := v.Grant(ctx, ids[i][n], vault.Access{Principal: "r", Purpose: "bench"})
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
			redeem[i] = append(redeem[i], time.Since(start))
		}
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	pl, pk, rl, rk := med(put[0]), med(put[1]), med(redeem[0]), med(redeem[1])
	b.ReportMetric(pl, "put-local-ms")
	b.ReportMetric(pk, "put-localkms-ms")
	b.ReportMetric(pk/pl, "put-ratio")
	b.ReportMetric(rl, "redeem-local-ms")
	b.ReportMetric(rk, "redeem-localkms-ms")
	b.ReportMetric(rk/rl, "redeem-ratio")
	b.ReportMetric(float64(keks[1].calls.Load())/float64(len(put[1])), "kms-calls/put+redeem")
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
