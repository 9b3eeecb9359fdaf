package proctest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// setDeathSignal makes the kernel kill the server if the test binary dies
// without running Main's cleanup (a test timeout, a crash).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// waitStopped waits until every thread of process pid is stopped (stop)
// or none is (after SIGCONT): kill returns once the signal is queued, and
// on a loaded machine a server goes on answering requests for a while
// until the thread that takes SIGSTOP gets a CPU and stops the others.
func waitStopped(pid int, stop bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := threadsStopped(pid, stop)
		if err != nil || all {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proctest: process %d not %s after 10 s", pid, map[bool]string{true: "stopped", false: "continued"}[stop])
		}
		time.Sleep(time.Millisecond)
	}
}

// threadsStopped reports whether every thread of pid is in the state
// (stopped, or not) that stop asks for.
func threadsStopped(pid int, stop bool) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("proctest: unreadable /proc stat of process %d", pid)
		}
		stopped := b[i+2] == 'T' || b[i+2] == 't'
		if stopped != stop {
			return false, nil
		}
	}
	return true, nil
}
