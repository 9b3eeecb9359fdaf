// Package proctest runs the server processes that tests start on
// 127.0.0.1 (MinIO in internal/miniotest, local-kms in
// kms/awskms/localkms): each in its own process group, killed by the
// kernel when the test binary dies (on Linux), its output kept in a
// bounded Tail, and signalled as a whole for fault injection (Pause,
// Resume, Kill).
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"
)

// ErrNotRunning: the process has exited (or was killed), so it cannot be
// signalled.
var ErrNotRunning = errors.New("proctest: process not running")

// Proc is one started process and its process group.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Start starts cmd in its own process group with its standard output and
// error written to out, and reaps it when it exits.
func Start(cmd *exec.Cmd, out *Tail) (*Proc, error) {
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitState is how the process exited; read it only once Done is closed.
func (p *Proc) ExitState() *os.ProcessState { return p.cmd.ProcessState }

// running returns ErrNotRunning once the process has exited.
func (p *Proc) running() error {
	select {
	case <-p.done:
		return ErrNotRunning
	default:
		return nil
	}
}

// Pause sends SIGSTOP to the process group: the server keeps its
// connections and answers nothing, as a hung one would, until Resume. It
// returns once every thread of the process is stopped (on Linux; kill alone
// returns while the server may go on answering for a while on a loaded
// machine).
func (p *Proc) Pause() error { return p.stop(true) }

// Resume sends SIGCONT to a process paused with Pause and waits until it
// runs again.
func (p *Proc) Resume() error { return p.stop(false) }

func (p *Proc) stop(stop bool) error {
	if err := p.running(); err != nil {
		return err
	}
	return stopGroup(p.cmd, stop)
}

// Kill sends SIGKILL to the process group and waits for the process to
// exit, as a crash would. It returns ErrNotRunning if it had exited.
func (p *Proc) Kill() error {
	if err := p.running(); err != nil {
		return err
	}
	signalGroup(p.cmd, true)
	<-p.done
	return nil
}

// Stop asks the process group to terminate (SIGTERM), waits up to grace,
// then kills it (SIGKILL) and waits for it. A grace of zero kills at once.
// Stop of a process that has exited does nothing.
func (p *Proc) Stop(grace time.Duration) {
	if p.running() != nil {
		return
	}
	if grace > 0 {
		signalGroup(p.cmd, false)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
	}
	signalGroup(p.cmd, true)
	<-p.done
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
// Another process may take it before the server binds it: callers retry a
// server that exits at start.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("proctest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Tail keeps the last Limit bytes written to it; it is safe for concurrent
// use, so a server's output can be read while the server writes it.
type Tail struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

// NewTail returns a Tail that keeps the last limit bytes.
func NewTail(limit int) *Tail { return &Tail{limit: limit} }

func (b *Tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// Lines returns the last n lines written.
func (b *Tail) Lines(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(b.buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
