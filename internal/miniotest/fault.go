package miniotest

import (
	"errors"
	"fmt"

	"github.com/idvault/idvault/internal/proctest"
)

// ErrNoProcess: the server's process is not running (never started, or
// already killed), so it cannot be signalled.
var ErrNoProcess = errors.New("miniotest: server process not running")

// Kill sends SIGKILL to a server started with Start (its whole process
// group) and waits for it to exit, as a crash of the storage would. Put
// and Get calls in flight fail with connection errors; later calls are
// refused. The data directory stays until Stop. Fault-injection tests only:
// the shared server of Server must never be killed.
func (s *Srv) Kill() error {
	if s.proc == nil || s.proc.Kill() != nil {
		return ErrNoProcess
	}
	return nil
}

// Restart starts a server stopped by Kill again, on the same address,
// with the same credentials and the same data, and waits until it answers,
// as a storage server restarted after a crash would. Clients made before
// the crash work again. Fault-injection tests only.
func (s *Srv) Restart() error {
	if s.proc == nil || s.bin == "" {
		return ErrNoProcess
	}
	select {
	case <-s.proc.Done():
	default:
		return errRunning
	}
	if err := s.run(); err != nil {
		return err
	}
	if err := s.waitReady(); err != nil {
		return fmt.Errorf("miniotest: restarted server not ready: %w\n--- server output (tail) ---\n%s", err, s.out.Lines(tailLines))
	}
	return nil
}

// errRunning: Restart of a server that is still running.
var errRunning = errors.New("miniotest: server still running (Kill it first)")

// Pause sends SIGSTOP to a server started with Start: it keeps its
// connections open and answers nothing, as a hung storage would, until
// Resume. It returns once every thread of the server is stopped (on Linux;
// kill alone returns while the server may still answer for a while on a
// loaded machine). Fault-injection tests only.
func (s *Srv) Pause() error { return s.signalStop((*proctest.Proc).Pause) }

// Resume sends SIGCONT to a server paused with Pause.
func (s *Srv) Resume() error { return s.signalStop((*proctest.Proc).Resume) }

func (s *Srv) signalStop(op func(*proctest.Proc) error) error {
	if s.proc == nil {
		return ErrNoProcess
	}
	if err := op(s.proc); errors.Is(err, proctest.ErrNotRunning) {
		return ErrNoProcess
	} else {
		return err
	}
}
