// Package release knows the repository's modules as they are published:
// which directories are modules, which of them are tagged, and how to
// build a file-based module proxy (GOPROXY=file://DIR) that serves them at
// one version from the working tree, as the tags of a release would.
//
// The repository is a Go workspace (go.work). The root module
// github.com/idvault/idvault is tagged vX.Y.Z; each published nested module
// is tagged with its directory as prefix (kms/awskms/vX.Y.Z), and requires
// the root module (and its siblings) by that real version, with no replace
// directive: go.work wires them together for development. docs/releasing.md
// has the procedure. The tests of this package check that a module outside
// the repository resolves every published module from such a proxy, with
// no replace, no workspace and no network, and that no built executable is
// tracked.
package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// RootPath is the root module's path.
const RootPath = "github.com/idvault/idvault"

// Version is the release being prepared: the version every nested module
// requires the root module (and its published siblings) at, the version
// go.work points at the checkout, and, with "-dev", the version a CLI built
// from a checkout reports. docs/releasing.md says when it changes.
const Version = "v0.9.0"

// Published are the directories (relative to the repository root, "." for
// the root) of the modules a release tags, in the order they are tagged.
// The examples and the benchmark harness are modules of the workspace but
// are not published: nothing imports them and they run from a checkout.
var Published = []string{".", "kms/awskms", "kms/pkcs11", "vault/redislimiter", "cmd/idvault"}

// Unpublished are the workspace's other modules.
var Unpublished = []string{"examples/agegate", "examples/keysinprod", "bench", "vault/faulttest/kmsfault"}

// ModulePath is the module path of the module in dir.
func ModulePath(dir string) string {
	if dir == "." {
		return RootPath
	}
	return RootPath + "/" + dir
}

// TagFor is the tag that publishes the module in dir at version:
// "v0.9.0" for the root, "kms/awskms/v0.9.0" for a nested one.
func TagFor(dir, version string) string {
	if dir == "." {
		return version
	}
	return dir + "/" + version
}

// Root returns the repository root: the first directory at or above dir
// holding go.work.
func Root(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("release: no go.work above " + dir)
		}
		d = up
	}
}

// ReadGoMod parses the go.mod of the module in root/dir.
func ReadGoMod(root, dir string) (*modfile.File, error) {
	p := filepath.Join(root, dir, "go.mod")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(p, b, nil)
}

// TrackedFiles lists the files git would commit under root/dir (tracked,
// or untracked and not ignored), relative to root/dir, without those
// deleted from the working tree. It fails when root is not a git checkout.
func TrackedFiles(root, dir string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", dir)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("release: git ls-files: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" || seen[f] {
			continue
		}
		seen[f] = true
		fi, err := os.Lstat(filepath.Join(root, f))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		rel := f
		if dir != "." {
			rel = strings.TrimPrefix(f, dir+"/")
		}
		files = append(files, rel)
	}
	return files, nil
}

// zipFile is one file of a module zip, read from the working tree.
type zipFile struct {
	rel, abs string
}

func (f zipFile) Path() string                 { return f.rel }
func (f zipFile) Lstat() (os.FileInfo, error)  { return os.Lstat(f.abs) }
func (f zipFile) Open() (io.ReadCloser, error) { return os.Open(f.abs) }

// BuildProxy writes, under proxyDir, a module proxy serving every
// published module of the repository at root at version, built from the
// files git would commit (zip.Create leaves out nested modules, as the
// real module zips do). It returns the module versions it serves.
func BuildProxy(proxyDir, root, version string) ([]module.Version, error) {
	var served []module.Version
	for _, dir := range Published {
		m := module.Version{Path: ModulePath(dir), Version: version}
		files, err := TrackedFiles(root, dir)
		if err != nil {
			return nil, err
		}
		var zfs []zip.File
		for _, f := range files {
			zfs = append(zfs, zipFile{rel: f, abs: filepath.Join(root, dir, filepath.FromSlash(f))})
		}
		if err := writeVersion(proxyDir, m, zfs, filepath.Join(root, dir, "go.mod")); err != nil {
			return nil, fmt.Errorf("release: module %s: %w", m.Path, err)
		}
		served = append(served, m)
	}
	return served, nil
}

// writeVersion writes the list, .info, .mod and .zip of m.
func writeVersion(proxyDir string, m module.Version, files []zip.File, goMod string) error {
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	vesc, err := module.EscapeVersion(m.Version)
	if err != nil {
		return err
	}
	dir := filepath.Join(proxyDir, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mod, err := os.ReadFile(goMod)
	if err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	var z bytes.Buffer
	if err := zip.Create(&z, m, files); err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		"list":         []byte(m.Version + "\n"),
		vesc + ".info": info,
		vesc + ".mod":  mod,
		vesc + ".zip":  z.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
