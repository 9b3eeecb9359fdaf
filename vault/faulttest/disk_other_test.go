//go:build !linux

package faulttest_test

import (
	"os"
	"testing"
)

func mountTmpfs(*testing.T, string, string) bool { return false }

func requireTmpfs(t *testing.T, _, _ string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("the disk-full test needs Linux's tmpfs")
	}
	t.Skip("the disk-full test needs Linux's tmpfs")
}
