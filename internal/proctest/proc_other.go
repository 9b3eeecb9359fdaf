//go:build !unix

package proctest

import (
	"errors"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, _ bool) { _ = cmd.Process.Kill() }

// stopGroup: processes cannot be paused here.
func stopGroup(*exec.Cmd, bool) error { return errors.ErrUnsupported }
