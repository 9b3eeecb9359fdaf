package testenv

// The scaffolding the project's own tests share: looking into a store, a
// log sink safe for concurrent writers, sample images and the real
// backends on a manual clock; child processes are in child.go. Users'
// tests get the store, the KEK and the clock from vaulttest.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// Keys lists every key of st under prefix, failing tb on an error.
func Keys(tb testing.TB, st store.Store, prefix string) []string {
	tb.Helper()
	var out []string
	for k, err := range st.List(context.Background(), prefix) {
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// Read returns the object under key, failing tb if it cannot be read.
func Read(tb testing.TB, st store.Store, key string) []byte {
	tb.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Exists reports whether key is in st, failing tb on any error but
// store.ErrNotFound.
func Exists(tb testing.TB, st store.Store, key string) bool {
	tb.Helper()
	rc, err := st.Get(context.Background(), key)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err != nil {
		tb.Fatal(err)
	}
	rc.Close()
	return true
}

// Write puts b under key (overwriting), failing tb on an error.
func Write(tb testing.TB, st store.Store, key string, b []byte) {
	tb.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b)), store.PutOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// JPEG returns n bytes that sniff as JPEG and carry marker (if it fits) in
// the middle, so a test can search storage for the plaintext.
func JPEG(n int, marker string) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0})
	if len(marker) > 0 && n >= 4+len(marker) {
		copy(b[n/2:], marker)
	}
	return b
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a log
// sink for handlers running on many goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FS returns an fsstore in a temporary directory that tells its time by
// a new manual clock, and the clock: a test that moves the vault's clock
// moves the store's with it (the vault refuses anything irreversible
// while the two disagree).
func FS(tb testing.TB) (store.Store, *memstore.Clock) {
	tb.Helper()
	return FSAt(tb, tb.TempDir())
}

// FSAt is FS in dir, for a test that also reaches the files.
func FSAt(tb testing.TB, dir string) (store.Store, *memstore.Clock) {
	tb.Helper()
	c := memstore.NewClock()
	st, err := fsstore.OpenWithOptions(dir, fsstore.Options{Now: c.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return st, c
}

// S3 returns an s3store on a new bucket of srv (without object lock) that
// tells its time by a new manual clock, and the clock.
func S3(tb testing.TB, srv *miniotest.Srv) (store.Store, *memstore.Clock) {
	tb.Helper()
	c := memstore.NewClock()
	return S3At(tb, srv, srv.NewBucket(tb, false), c), c
}

// S3At returns an s3store on bucket of srv that tells its time by c (one
// clock for the buckets of one deployment).
func S3At(tb testing.TB, srv *miniotest.Srv, bucket string, c *memstore.Clock) *s3store.Store {
	tb.Helper()
	st, err := s3store.New(context.Background(), srv.Client(tb), bucket, s3store.Options{Now: c.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// Until calls f(0), f(1), ... until stop is closed or f returns false:
// the body of a load generator.
func Until(stop <-chan struct{}, f func(i int) bool) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if !f(i) {
			return
		}
	}
}
