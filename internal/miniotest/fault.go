package miniotest

import "errors"

// ErrNoProcess: the server's process is not running (never started, or
// already killed), so it cannot be signalled.
var ErrNoProcess = errors.New("miniotest: server process not running")

// Kill sends SIGKILL to a server started with Start (its whole process
// group) and waits for it to exit, as a crash of the storage would. Put
// and Get calls in flight fail with connection errors; later calls are
// refused. The data directory stays until Stop. Fault-injection tests only:
// the shared server of Server must never be killed.
func (s *Srv) Kill() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return ErrNoProcess
	}
	signalGroup(s.cmd, true)
	<-s.done
	return nil
}

// Pause sends SIGSTOP to a server started with Start: it keeps its
// connections open and answers nothing, as a hung storage would, until
// Resume. Fault-injection tests only.
func (s *Srv) Pause() error { return s.signalStop(true) }

// Resume sends SIGCONT to a server paused with Pause.
func (s *Srv) Resume() error { return s.signalStop(false) }

func (s *Srv) signalStop(stop bool) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return ErrNoProcess
	}
	select {
	case <-s.done:
		return ErrNoProcess
	default:
	}
	return stopGroup(s.cmd, stop)
}
