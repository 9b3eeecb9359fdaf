package vault

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// The benchmarks run the vault beside the plain alternative on the same
// MinIO in the same run, so their ratio means something on a noisy
// machine:
//
//	go test -run '^$' -bench . -benchtime 2s ./vault/
//
// (`make bench` runs the fuller harness in ./bench and prints the ratios.)

var benchSizes = []struct {
	name string
	n    int
}{{"4KiB", 4 << 10}, {"256KiB", 256 << 10}, {"1MiB", 1 << 20}, {"5MiB", 5 << 20}}

// benchBackends are the real stores; the S3 one also hands out its bucket
// for the plain minio-go comparisons.
type benchStore struct {
	name   string
	st     store.Store
	client *minio.Client
	bucket string
}

func benchStores(b *testing.B) []benchStore {
	srv := miniotest.Server(b)
	client := srv.Client(b)
	bucket := srv.NewBucket(b, false)
	s3, err := s3store.New(context.Background(), client, bucket, s3store.Options{Prefix: "vault"})
	if err != nil {
		b.Fatal(err)
	}
	return []benchStore{{name: "fs", st: fsBackend(b)}, {name: "s3", st: s3, client: client, bucket: bucket}}
}

func benchVault(b *testing.B, st store.Store) *Vault {
	v, err := Open(context.Background(), Config{Store: st, KEK: testKEK(b), Detection: DetectionConfig{Quota: Quota{Documents: 1 << 30, Redemptions: 1 << 30, Burst: 1 << 30}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close(context.Background()) })
	return v
}

func BenchmarkPut(b *testing.B) {
	for _, bs := range benchStores(b) {
		v := benchVault(b, bs.st)
		for _, sz := range benchSizes {
			img := image(sz.n, "")
			b.Run(bs.name+"/"+sz.name, func(b *testing.B) {
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Put(context.Background(), Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"}); err != nil {
						b.Fatal(err)
					}
				}
			})
			if bs.client != nil {
				b.Run("s3-plain-PutObject/"+sz.name, func(b *testing.B) {
					b.SetBytes(int64(sz.n))
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if _, err := bs.client.PutObject(context.Background(), bs.bucket, fmt.Sprintf("plain/put-%d", i), bytes.NewReader(img), int64(len(img)), minio.PutObjectOptions{}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkOpen is the internal read path: key record, unwrap, decrypt.
func BenchmarkOpen(b *testing.B) {
	for _, bs := range benchStores(b) {
		v := benchVault(b, bs.st)
		for _, sz := range benchSizes {
			info, err := v.Put(context.Background(), Document{Body: bytes.NewReader(image(sz.n, "")), Size: int64(sz.n), Subject: "m"})
			if err != nil {
				b.Fatal(err)
			}
			id, _ := parseObjectID(info.ID)
			b.Run(bs.name+"/"+sz.name, func(b *testing.B) {
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					rc, _, err := v.openObject(context.Background(), id)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			})
		}
	}
}

func BenchmarkGrant(b *testing.B) {
	for _, bs := range benchStores(b) {
		v := benchVault(b, bs.st)
		info, err := v.Put(context.Background(), Document{Body: bytes.NewReader(image(4096, "")), Size: 4096, Subject: "m"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedeem is Grant + Redeem + reading the image, beside a plain
// unencrypted GetObject and a GET of a presigned URL of the same bytes.
func BenchmarkRedeem(b *testing.B) {
	ctx := context.Background()
	for _, bs := range benchStores(b) {
		v := benchVault(b, bs.st)
		for _, sz := range []int{4 << 10, 1 << 20, 5 << 20} {
			name := map[int]string{4 << 10: "4KiB", 1 << 20: "1MiB", 5 << 20: "5MiB"}[sz]
			img := image(sz, "")
			info, err := v.Put(ctx, Document{Body: bytes.NewReader(img), Size: int64(sz), Subject: "m"})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(bs.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(sz))
				b.ReportAllocs()
				for b.Loop() {
					g, err := v.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "bench"})
					if err != nil {
						b.Fatal(err)
					}
					rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "r"})
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, rc)
					rc.Close()
				}
			})
			if bs.client == nil {
				continue
			}
			key := "plain/" + name
			if _, err := bs.client.PutObject(ctx, bs.bucket, key, bytes.NewReader(img), int64(sz), minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
			b.Run("s3-plain-GetObject/"+name, func(b *testing.B) {
				b.SetBytes(int64(sz))
				b.ReportAllocs()
				for b.Loop() {
					obj, err := bs.client.GetObject(ctx, bs.bucket, key, minio.GetObjectOptions{})
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, obj)
					obj.Close()
				}
			})
			b.Run("s3-presigned-GET/"+name, func(b *testing.B) {
				b.SetBytes(int64(sz))
				b.ReportAllocs()
				for b.Loop() {
					u, err := bs.client.PresignedGetObject(ctx, bs.bucket, key, time.Minute, url.Values{})
					if err != nil {
						b.Fatal(err)
					}
					resp, err := http.Get(u.String())
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	}
}

// BenchmarkSweep shreds b.N expired documents on fsstore and reports the
// time per document. The figure is 100,000:
//
//	go test -run '^$' -bench Sweep -benchtime 100000x ./vault/
func BenchmarkSweep(b *testing.B) {
	st := fsBackend(b)
	clock := newClock()
	v, err := Open(context.Background(), Config{Store: st, KEK: testKEK(b), Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close(context.Background())
	img := image(2048, "")
	// Setup is not timed: b.N documents, put concurrently.
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := g; i < b.N; i += 8 {
				if _, err := v.Put(context.Background(), Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	clock.Advance(DefaultRetention + time.Hour)
	b.ResetTimer()
	rep, err := v.Admin().Sweep(context.Background(), testActor)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if rep.Expired != b.N {
		b.Fatalf("swept %d of %d", rep.Expired, b.N)
	}
}
