package miniotest

import "syscall"

// setDeathSignal makes the kernel kill the server if the test binary dies
// without running Main's cleanup (a test timeout, a crash).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
