package localkms

import (
	"bytes"
	"fmt"
	"os"
	"time"
)

// waitStopped waits until every thread of process pid is stopped (stop)
// or none is: kill returns once the signal is queued, and on a loaded
// machine a server goes on answering for a while until the thread that
// takes SIGSTOP gets a CPU and stops the others.
func waitStopped(pid int, stop bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := threadsStopped(pid, stop)
		if err != nil || all {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localkms: process %d not in the state asked for after 10 s", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

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
		i := bytes.LastIndexByte(b, ')') // comm may hold spaces and parentheses
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("localkms: unreadable /proc stat of process %d", pid)
		}
		if stopped := b[i+2] == 'T' || b[i+2] == 't'; stopped != stop {
			return false, nil
		}
	}
	return true, nil
}
