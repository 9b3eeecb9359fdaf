package proctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	b := NewTail(32)
	for i := range 100 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if len(b.buf) > 32 {
		t.Fatalf("buffer holds %d bytes, limit 32", len(b.buf))
	}
	if got := b.Lines(2); got != "line 98\nline 99" {
		t.Fatalf("Lines(2) = %q", got)
	}
}

func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "minio")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "data")
	if err := os.WriteFile(noexec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  string
		want string
	}{
		{exe, exe},
		{noexec, ""},
		{filepath.Join(dir, "absent"), ""},
	}
	for _, tc := range tests {
		t.Setenv("PROCTEST_BIN", tc.env)
		if got := FindBinary("PROCTEST_BIN", "minio"); got != tc.want {
			t.Errorf("PROCTEST_BIN=%s: FindBinary = %q, want %q", filepath.Base(tc.env), got, tc.want)
		}
	}
}

func TestModuleRoot(t *testing.T) {
	root := moduleRoot()
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("moduleRoot() = %q without go.mod", root)
	}
	wd, _ := os.Getwd()
	if rel, err := filepath.Rel(root, wd); err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("moduleRoot() = %q is not above %q", root, wd)
	}
}
