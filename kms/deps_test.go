package kms_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMinimalProgramHasNoKMSDependencies builds, with CGO_ENABLED=0, a
// program that uses vault, fsstore and kms (kms.Open of a local: keyset),
// as its own module outside this workspace, and checks that its module
// graph holds no AWS SDK, Tink KMS client or PKCS#11 module: those live in
// the nested modules kms/awskms and kms/pkcs11 only.
func TestMinimalProgramHasNoKMSDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module example.com/minimal\n\ngo 1.26.0\n\nrequire github.com/idvault/idvault v0.0.0-00010101000000-000000000000\n\nreplace github.com/idvault/idvault => " + root + "\n"
	prog := `package main

import (
	"context"
	"log"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

func main() {
	ctx := context.Background()
	st, err := fsstore.Open("store")
	if err != nil {
		log.Fatal(err)
	}
	kek, err := kms.Open(ctx, "local:kek", kms.OpenOptions{Passphrase: kms.PassphraseEnv("IDVAULT_PASSPHRASE")})
	if err != nil {
		log.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	if err != nil {
		log.Fatal(err)
	}
	v.Close(ctx)
}
`
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"go.mod": gomod, "main.go": prog, "go.sum": string(sum)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		// The module proxy (a package registry) may be asked for the go.mod
		// files of modules the graph names but no build needs: which of
		// those a fresh machine has cached depends on what ran before.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("build", "-o", filepath.Join(dir, "minimal"), ".")
	mods := run("list", "-m", "all")
	for _, bad := range []string{"aws", "pkcs11", "tink-go-awskms", "tink-go-gcpkms", "tink-go-hcvault", "idvault/kms/"} {
		if strings.Contains(mods, bad) {
			t.Errorf("the module graph of a vault+fsstore+kms program holds %q:\n%s", bad, mods)
		}
	}
	if !strings.Contains(mods, "github.com/idvault/idvault") {
		t.Fatalf("go list -m all did not list the root module:\n%s", mods)
	}
}
