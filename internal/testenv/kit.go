package testenv

// The scaffolding the project's own tests share: looking into a store, a
// log sink safe for concurrent writers, sample images, the real backends
// on a manual clock, and child processes (a test binary re-run from
// TestMain and killed at a random point). Users' tests get the store, the
// KEK and the clock from vaulttest.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
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

// Child is a child process whose stdout the parent reads line by line and
// whose stderr it keeps for failure messages.
type Child struct {
	Cmd *exec.Cmd
	// Lines scans the child's stdout.
	Lines  *bufio.Scanner
	stderr Buffer
}

// StartChild starts cmd with its stdout piped, failing tb if it cannot.
func StartChild(tb testing.TB, cmd *exec.Cmd) *Child {
	tb.Helper()
	c := &Child{Cmd: cmd}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = &c.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c.Lines = bufio.NewScanner(stdout)
	return c
}

// Expect reads the child's first line and returns it; if there is none,
// or it does not begin with prefix, it kills the child and fails tb with
// the child's stderr.
func (c *Child) Expect(tb testing.TB, prefix string) string {
	tb.Helper()
	if !c.Lines.Scan() || !strings.HasPrefix(c.Lines.Text(), prefix) {
		c.Kill()
		tb.Fatalf("child did not start: %s", c.Stderr())
	}
	return c.Lines.Text()
}

// Kill kills the child (SIGKILL) and waits for it.
func (c *Child) Kill() {
	c.Cmd.Process.Kill()
	c.Cmd.Wait()
}

// Stderr returns what the child wrote to stderr so far.
func (c *Child) Stderr() string { return c.stderr.String() }

// SharedDir makes a directory holding an fsstore and a KEK file that a
// test and the child processes it starts open alike (the child with
// OpenSharedDir), and returns it with the parent's store and KEK.
func SharedDir(tb testing.TB) (dir string, st store.Store, kek kms.KEK) {
	tb.Helper()
	dir = tb.TempDir()
	kek = kektest.CreateFile(tb, filepath.Join(dir, "kek"))
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		tb.Fatal(err)
	}
	return dir, st, kek
}

// OpenSharedDir opens, in a child process, the store and the KEK of a
// directory SharedDir made.
func OpenSharedDir(dir string) (store.Store, kms.KEK, error) {
	kek, err := kektest.OpenFile(filepath.Join(dir, "kek"))
	if err != nil {
		return nil, nil, err
	}
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return nil, nil, err
	}
	return st, kek, nil
}

// Acks writes a child process's acknowledgements to its stdout, a whole
// line at a time from any goroutine, each flushed before Printf returns:
// the parent reads a line only once what it acknowledges is done.
type Acks struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// NewAcks returns an Acks writing to os.Stdout.
func NewAcks() *Acks { return &Acks{w: bufio.NewWriter(os.Stdout)} }

// Printf writes one line (a newline is added) and flushes it.
func (a *Acks) Printf(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.w, format+"\n", args...)
	a.w.Flush()
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
