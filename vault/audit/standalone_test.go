package audit

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// writerFiles hold the writing side of the package: the Appender, its
// leases, its bounded store calls, and the Follower. Everything else is
// the formats, the verifier and Scan, which a security team reads alone.
var writerFiles = []string{"appender.go", "lease.go", "bounded.go", "follow.go"}

// TestVerifierStandsAlone builds the package with the writer's files
// replaced by empty ones (go build -overlay): it compiles only while
// nothing in the formats, the verifier or Scan refers to the writer, so a
// reader of verify.go never has to read appender.go or lease.go to know
// what is checked.
func TestVerifierStandsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.go")
	if err := os.WriteFile(empty, []byte("package audit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	replace := map[string]string{}
	for _, f := range writerFiles {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("writer file %s: %v (update writerFiles)", f, err)
		}
		replace[filepath.Join(wd, f)] = empty
	}
	b, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlay, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-overlay", overlay, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the formats and the verifier do not build without the writer:\n%s", out)
	}
}
