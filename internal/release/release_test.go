package release

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// repoRoot is the repository root, or the test stops: it needs the
// checkout (and git); under CI=true their absence is a failure.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := Root(".")
	if err == nil {
		_, err = exec.LookPath("git")
	}
	if err == nil {
		_, err = TrackedFiles(root, ".")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not in a git checkout: %v", err)
		}
		t.Skipf("not in a git checkout: %v", err)
	}
	return root
}

// TestGoModsPublishable: every module of the workspace requires the root
// module (and its published siblings) by the release being prepared
// (Version) and carries no replace directive: go install refuses a module
// with one, and outside the repository a relative replace points nowhere.
func TestGoModsPublishable(t *testing.T) {
	root := repoRoot(t)
	version := Version
	if !semver.IsValid(version) || semver.Prerelease(version) != "" || semver.Build(version) != "" {
		t.Fatalf("Version %q is not a release version", version)
	}
	for _, dir := range append(append([]string{}, Published...), Unpublished...) {
		f, err := ReadGoMod(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		if f.Module.Mod.Path != ModulePath(dir) {
			t.Errorf("%s/go.mod declares %s, want %s", dir, f.Module.Mod.Path, ModulePath(dir))
		}
		for _, r := range f.Replace {
			t.Errorf("%s/go.mod replaces %s: use go.work for development", dir, r.Old.Path)
		}
		for _, r := range f.Require {
			if strings.HasPrefix(r.Mod.Path, RootPath) && r.Mod.Version != version {
				t.Errorf("%s/go.mod requires %s %s, want %s", dir, r.Mod.Path, r.Mod.Version, version)
			}
		}
	}
	// Every module of go.work is listed here, and the other way round; its
	// replacements (development only) name the same version.
	b, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	wf, err := modfile.ParseWork("go.work", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, u := range wf.Use {
		used[filepath.Clean(u.Path)] = true
	}
	for _, dir := range append(append([]string{}, Published...), Unpublished...) {
		if !used[dir] {
			t.Errorf("module %s is not in go.work", dir)
		}
		delete(used, dir)
	}
	for dir := range used {
		t.Errorf("go.work uses %s, which this package does not list as published or not", dir)
	}
	for _, r := range wf.Replace {
		if strings.HasPrefix(r.Old.Path, RootPath) && r.Old.Version != version {
			t.Errorf("go.work replaces %s %s, want %s", r.Old.Path, r.Old.Version, version)
		}
	}
	// The fallback version of the CLI names the release being prepared.
	src, err := os.ReadFile(filepath.Join(root, "cmd", "idvault", "version.go"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `var fallbackVersion = "` + version + `-dev"`; !bytes.Contains(src, []byte(want)) {
		t.Errorf("cmd/idvault/version.go lacks %s", want)
	}
}

// outsideMain imports every published package family, the nested modules'
// included.
const outsideMain = `package main

import (
	"fmt"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms"
	"github.com/idvault/idvault/kms/pkcs11"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/redislimiter"
	"github.com/idvault/idvault/vault/s3store"
)

func main() {
	openers := []kms.Opener{awskms.NewOpener(awskms.Options{}), pkcs11.NewOpener(pkcs11.Options{})}
	var limiter vault.Limiter = redislimiter.New(nil, "idv", redislimiter.Options{})
	_, _ = fsstore.Open, s3store.Dial
	fmt.Println("outside", len(openers), limiter != nil)
}
`

// outsideNestedMain imports the nested modules alone.
const outsideNestedMain = `package main

import (
	"fmt"

	"github.com/idvault/idvault/kms/awskms"
	"github.com/idvault/idvault/kms/pkcs11"
	"github.com/idvault/idvault/vault/redislimiter"
)

func main() {
	fmt.Println("outside-nested", awskms.NewOpener(awskms.Options{}) != nil, pkcs11.NewOpener(pkcs11.Options{}) != nil, redislimiter.New(nil, "idv", redislimiter.Options{}) != nil)
}
`

// TestOutsideModule builds a module proxy from the repository (every
// published module at Version, as its tags would publish it), then, in a
// throwaway module outside the repository, with no replace, no workspace
// (GOWORK=off) and no network (GOPROXY: that proxy, then the local module
// cache's download directory as a second file proxy for third-party
// modules, then off), runs go mod tidy and go build of a program importing
// every nested module, and go install of the CLI at that version, whose
// version command must report it.
//
// The module cache is a fresh directory (-modcacherw), not the shared one:
// it would keep the first build of github.com/idvault/idvault@v0.9.0 and
// serve it to every later run, and a test running beside this one (two
// make test at once) would share it.
func TestOutsideModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every nested module from a module proxy")
	}
	root := repoRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go command on PATH")
	}
	version := Version
	work := t.TempDir()
	proxy := filepath.Join(work, "proxy")
	if _, err := BuildProxy(proxy, root, version); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	primeModuleCache(t, goBin, root, work)
	env := goEnv(map[string]string{
		"GOWORK":      "off",
		"GOPROXY":     "file://" + filepath.ToSlash(proxy) + ",file://" + filepath.ToSlash(cache) + ",off",
		"GONOSUMDB":   RootPath,
		"GOPRIVATE":   "",
		"GONOPROXY":   "",
		"GOSUMDB":     "",
		"GOFLAGS":     "-mod=mod -modcacherw -trimpath",
		"GOMODCACHE":  filepath.Join(work, "modcache"),
		"GOTOOLCHAIN": "local",
		"GOBIN":       filepath.Join(work, "bin"),
		"CGO_ENABLED": "1",
	})
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = dir, env
		if args[0] == "install" {
			// go install m@v reads no go.sum (not even m's): every
			// third-party module would be checked against the checksum
			// database, which is out of reach (no network). The module
			// cache vouches for them here; ours are under GONOSUMDB anyway.
			cmd.Env = append(env, "GOSUMDB=off")
		}
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, b)
		}
		return string(b)
	}

	// Throwaway modules outside the repository: one importing the library
	// and every nested module, one importing only the nested modules (so
	// that the root module is reached only through their requirements).
	// Their go.sum starts with the repository's third-party checksums,
	// which go mod tidy checks the cached modules against (no checksum
	// database is reachable); ours are not in it and come unverified from
	// the proxy (GONOSUMDB).
	for name, src := range map[string]string{"outside": outsideMain, "outside-nested": outsideNestedMain} {
		mod := filepath.Join(work, name)
		if err := os.MkdirAll(mod, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, content := range map[string]string{
			"go.mod":  "module example.com/" + name + "\n\ngo 1.26.0\n",
			"main.go": src,
			"go.sum":  thirdPartySums(t, root),
		} {
			if err := os.WriteFile(filepath.Join(mod, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		run(mod, "mod", "tidy")
		gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{".", "kms/awskms", "kms/pkcs11", "vault/redislimiter"} {
			if want := ModulePath(dir) + " " + version; !strings.Contains(string(gomod), want) {
				t.Errorf("%s/go.mod does not require %s:\n%s", name, want, gomod)
			}
		}
		if strings.Contains(string(gomod), "replace") {
			t.Fatalf("replace in %s/go.mod:\n%s", name, gomod)
		}
		bin := filepath.Join(work, name+"-bin")
		run(mod, "build", "-o", bin, ".")
		if b, err := exec.Command(bin).Output(); err != nil || !strings.HasPrefix(string(b), name+" ") {
			t.Fatalf("the %s program: %q, %v", name, b, err)
		}
	}

	// go install ...@version, from a directory outside any module.
	run(work, "install", ModulePath("cmd/idvault")+"@"+version)
	b, err := exec.Command(filepath.Join(work, "bin", "idvault"), "version").Output()
	if err != nil {
		t.Fatalf("the installed idvault: %v", err)
	}
	if want := "idvault " + version + " (library " + version + ") "; !strings.HasPrefix(string(b), want) {
		t.Fatalf("installed idvault version: %q, want it to start with %q", b, want)
	}
}

// primeModuleCache makes sure the local module cache holds every
// third-party module whose content the repository's published modules
// record in their go.sum (a machine that only built the repository lacks
// some, such as the test dependencies of go-redis that go mod tidy reads).
// It downloads through the configured GOPROXY, checked against the
// checksum database as usual; the modules already cached cost nothing. Our
// own modules are never fetched here.
func primeModuleCache(t *testing.T, goBin, root, work string) {
	t.Helper()
	seen := map[string]bool{}
	var mods []string
	for _, dir := range Published {
		data, err := os.ReadFile(filepath.Join(root, dir, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 || strings.HasSuffix(f[1], "/go.mod") || strings.HasPrefix(f[0], RootPath) {
				continue
			}
			if m := f[0] + "@" + f[1]; !seen[m] {
				seen[m] = true
				mods = append(mods, m)
			}
		}
	}
	cmd := exec.Command(goBin, append([]string{"mod", "download"}, mods...)...)
	cmd.Dir = work
	cmd.Env = goEnv(map[string]string{"GOWORK": "off", "GOFLAGS": "-mod=mod"})
	if b, err := cmd.CombinedOutput(); err != nil {
		msg := fmt.Sprintf("filling the module cache with the %d third-party modules the go.sum files name (network to the module proxy): %v\n%s", len(mods), err, b)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// goEnv is the process environment with set applied (an empty value
// removes the variable).
func goEnv(set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// thirdPartySums is every go.sum line of the repository's modules that is
// not about one of ours.
func thirdPartySums(t *testing.T, root string) string {
	t.Helper()
	seen := map[string]bool{}
	var b strings.Builder
	files := []string{filepath.Join(root, "go.work.sum")}
	for _, dir := range append(append([]string{}, Published...), Unpublished...) {
		files = append(files, filepath.Join(root, dir, "go.sum"))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l == "" || seen[l] || strings.HasPrefix(l, RootPath+" ") || strings.HasPrefix(l, RootPath+"/") {
				continue
			}
			seen[l] = true
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestNoTrackedBinaries fails when git tracks (or would add: untracked
// and not ignored) a built executable: ELF, Mach-O, PE, WebAssembly or a
// Java class. Two stale idvault binaries were once committed, 36 MB that
// answered "unknown command" to version.
func TestNoTrackedBinaries(t *testing.T) {
	root := repoRoot(t)
	files, err := TrackedFiles(root, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("only %d files listed: not the whole checkout", len(files))
	}
	for _, f := range files {
		if kind := executableKind(filepath.Join(root, f)); kind != "" {
			t.Errorf("%s is a built executable (%s): remove it (git rm --cached) and keep it out with .gitignore", f, kind)
		}
	}
}

// executableKind names the executable format of the file at p by its
// magic number, or returns "".
func executableKind(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	var h [64]byte
	n, _ := io.ReadFull(f, h[:])
	b := h[:n]
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		return "ELF"
	case bytes.HasPrefix(b, []byte{0xfe, 0xed, 0xfa, 0xce}), bytes.HasPrefix(b, []byte{0xce, 0xfa, 0xed, 0xfe}),
		bytes.HasPrefix(b, []byte{0xfe, 0xed, 0xfa, 0xcf}), bytes.HasPrefix(b, []byte{0xcf, 0xfa, 0xed, 0xfe}):
		return "Mach-O"
	case bytes.HasPrefix(b, []byte{0xca, 0xfe, 0xba, 0xbe}):
		return "Mach-O universal or Java class"
	case bytes.HasPrefix(b, []byte("\x00asm")):
		return "WebAssembly"
	case bytes.HasPrefix(b, []byte("MZ")) && n == 64:
		// A PE file: "PE\0\0" at the offset the DOS header gives.
		off := int64(binary.LittleEndian.Uint32(h[60:64]))
		var sig [4]byte
		if _, err := f.ReadAt(sig[:], off); err == nil && string(sig[:]) == "PE\x00\x00" {
			return "PE"
		}
	}
	return ""
}
