package proctest

import (
	"os"
	"os/exec"
	"path/filepath"
)

// FindBinary returns the server binary name to run, or "" if there is
// none: the file $env names (if it is set, and only if it is an
// executable file), else name on PATH, else bin/name in the module root
// or a directory above it (the workspace root, for a nested module such
// as cmd/idvault), where `make test` installs the servers.
func FindBinary(env, name string) string {
	if p := os.Getenv(env); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for dir := moduleRoot(); dir != ""; {
		if p := filepath.Join(dir, "bin", name); isExecutable(p) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// moduleRoot walks up from the working directory to the first directory
// holding a go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
