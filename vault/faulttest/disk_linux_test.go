//go:build linux

package faulttest_test

import (
	"os"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of size bytes on dir when running as root, and
// unmounts it at cleanup; it reports whether it did.
func mountTmpfs(t *testing.T, dir string, size string) bool {
	if os.Geteuid() != 0 {
		return false
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Logf("cannot mount a tmpfs (%v): using a store that answers ENOSPC", err)
		return false
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return true
}

// requireTmpfs mounts a tmpfs of size on dir for the test, or skips it
// (fails it under CI=true, where the suite runs as root).
func requireTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if mountTmpfs(t, dir, size) {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("cannot mount a tmpfs (needs root): the disk-full test cannot run")
	}
	t.Skip("cannot mount a tmpfs (needs root)")
}
