//go:build unix

package proctest

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in its own process group so that stop can
// signal everything it spawned.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
}

func signalGroup(cmd *exec.Cmd, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	// A negative pid addresses the process group this package created.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}

// stopGroup sends SIGSTOP (stop) or SIGCONT to the server's process group
// and waits until the server is stopped (or running again).
func stopGroup(cmd *exec.Cmd, stop bool) error {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		return err
	}
	return waitStopped(cmd.Process.Pid, stop)
}
