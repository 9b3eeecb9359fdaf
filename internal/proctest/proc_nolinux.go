//go:build unix && !linux

package proctest

import "syscall"

func setDeathSignal(*syscall.SysProcAttr) {}

// waitStopped cannot look here; kill's signal is taken as delivered.
func waitStopped(int, bool) error { return nil }
