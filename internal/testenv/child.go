package testenv

// Child processes: a test binary re-run from TestMain, acknowledging
// its work line by line, and killed at a random point.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

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
