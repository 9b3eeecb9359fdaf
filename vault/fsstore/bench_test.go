package fsstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

var benchSizes = []struct {
	name string
	n    int
}{
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
}

// BenchmarkPut measures a durable Put: write, fsync, rename, fsync of the
// directory. Keys rotate over 64 names, so most Puts replace an object.
func BenchmarkPut(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			s := open(b)
			data := bytes.Repeat([]byte{0xa5}, sz.n)
			r := bytes.NewReader(data)
			ctx := context.Background()
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Reset(data)
				if err := s.Put(ctx, fmt.Sprintf("blobs/%02d", i%64), r, int64(sz.n), store.PutOptions{}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkPutIfAbsent measures a create-only Put of a new key (link(2)
// instead of rename(2)), the cost of a single-use ledger entry.
func BenchmarkPutIfAbsent(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, fmt.Sprintf("redeemed/%08d", i), bytes.NewReader(nil), 0, store.PutOptions{IfAbsent: true}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			s := open(b)
			data := bytes.Repeat([]byte{0xa5}, sz.n)
			ctx := context.Background()
			if err := s.Put(ctx, "blobs/obj", bytes.NewReader(data), int64(sz.n), store.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			for b.Loop() {
				rc, err := s.Get(ctx, "blobs/obj")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf)
				rc.Close()
				if err != nil || n != int64(sz.n) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}

// BenchmarkList measures listing 2,000 keys in 20 directories.
func BenchmarkList(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	for i := range 2000 {
		if err := s.Put(ctx, fmt.Sprintf("index/%02d/%04d", i%20, i), bytes.NewReader(nil), 0, store.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range s.List(ctx, "index/") {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 2000 {
			b.Fatalf("listed %d keys", n)
		}
	}
}
