package s3store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/store"
)

var benchSizes = []int{4 << 10, 1 << 20}

// BenchmarkPut measures Put, and beside it ("minio-go") a bare PutObject of
// the same bytes from a bytes.Reader, so the ratio of the two shows what the
// store adds (mostly: a body it may not seek is signed chunk by chunk).
func BenchmarkPut(b *testing.B) {
	srv := miniotest.Server(b)
	bucket := srv.NewBucket(b, false)
	s := newStore(b, srv, bucket, "")
	c := srv.Client(b)
	ctx := context.Background()
	for _, n := range benchSizes {
		data := bytes.Repeat([]byte{0xa5}, n)
		b.Run(fmt.Sprintf("minio-go/%dKiB", n>>10), func(b *testing.B) {
			benchPuts(b, n, "raw", func(key string) error {
				_, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(n), minio.PutObjectOptions{})
				return err
			})
		})
		b.Run(fmt.Sprintf("store/%dKiB", n>>10), func(b *testing.B) {
			benchPuts(b, n, "put", func(key string) error {
				return s.Put(ctx, key, bytes.NewReader(data), int64(n), store.PutOptions{})
			})
		})
	}
}

// benchPuts measures put of n bytes, over 64 keys named by size and kind.
func benchPuts(b *testing.B, n int, kind string, put func(key string) error) {
	b.SetBytes(int64(n))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := put(fmt.Sprintf("bench/%s/%d/%d", kind, n, i%64)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	srv := miniotest.Server(b)
	s := newStore(b, srv, srv.NewBucket(b, false), "")
	ctx := context.Background()
	for _, n := range benchSizes {
		key := fmt.Sprintf("bench/get/%d", n)
		mustPut(b, s, key, bytes.Repeat([]byte{0x5a}, n))
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			buf := make([]byte, 32<<10)
			for b.Loop() {
				rc, err := s.Get(ctx, key)
				if err != nil {
					b.Fatal(err)
				}
				got, err := io.CopyBuffer(io.Discard, rc, buf)
				rc.Close()
				if err != nil || got != int64(n) {
					b.Fatalf("read %d bytes: %v", got, err)
				}
			}
		})
	}
}
