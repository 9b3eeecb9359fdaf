package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
)

func TestVerifyOK(t *testing.T) {
	fx := newFixture(t)
	keyFile := filepath.Join(t.TempDir(), "audit.pub")
	if err := os.WriteFile(keyFile, []byte(fx.verifierKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		wantWarning bool
	}{
		{"pinned key flag", nil, []string{"--store", fx.dir, "--verifier-key", fx.verifierKey}, false},
		{"pinned key file", nil, []string{"--store", fx.dir, "--verifier-key-file", keyFile}, false},
		{"file URL", nil, []string{"--store", "file://" + fx.dir, "--verifier-key", fx.verifierKey}, false},
		{"store from env", map[string]string{"IDVAULT_STORE": fx.dir}, []string{"--verifier-key", fx.verifierKey}, false},
		{"key from store", nil, []string{"--store", fx.dir}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, r := outputLines(t, tt.env, append([]string{"audit", "verify"}, tt.args...)...)
			if len(lines) != len(fx.logs)+1 || lines[len(lines)-1] != "OK" {
				t.Fatalf("want one line per log and OK, got %v", r)
			}
			for i, id := range sortedCopy(fx.logs) {
				n := len(fixtureLogA())
				if id == fx.logs[1] {
					n = len(fixtureLogB())
				}
				want := "log " + id + ": " + itoa(n) + " records, "
				if !strings.HasPrefix(lines[i], want) || !strings.Contains(lines[i], "verified size "+itoa(n)) || !strings.Contains(lines[i], "final") {
					t.Errorf("line %d = %q, want prefix %q, verified size %d, final", i, lines[i], want, n)
				}
			}
			if got := strings.Contains(r.stderr, "warning:"); got != tt.wantWarning {
				t.Errorf("warning printed = %v, want %v; stderr:\n%s", got, tt.wantWarning, r.stderr)
			}
			if tt.wantWarning && !strings.Contains(r.stderr, "--verifier-key "+fx.verifierKey) {
				t.Errorf("warning does not show the key to pin:\n%s", r.stderr)
			}
		})
	}
}

// TestVerifyDetectsEveryFlippedByte flips one byte of every audit object
// file in turn (first, middle and last byte), restoring it in between:
// verify must exit 1 every time and 0 again after the restore.
func TestVerifyDetectsEveryFlippedByte(t *testing.T) {
	fx := newFixture(t)
	files := append(fx.auditFiles(t), fx.leaseFiles(t)...) // leases are evidence too
	var batches, checkpoints int
	for _, f := range files {
		if strings.Contains(f, string(filepath.Separator)+"checkpoints"+string(filepath.Separator)) {
			checkpoints++
		} else if !strings.Contains(f, "_lease") && !strings.Contains(f, "_registry") {
			batches++
		}
	}
	if batches < len(fixtureLogA())/2 || checkpoints < 4 {
		t.Fatalf("fixture too small: %d batch and %d checkpoint files", batches, checkpoints)
	}
	verify := func() result {
		return runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey)
	}
	for _, f := range files {
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(fx.dir, f)
		for _, off := range []int{0, len(orig) / 2, len(orig) - 1} {
			b := bytes.Clone(orig)
			b[off] ^= 0xff
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r := verify()
			if r.code != exitFailed {
				t.Errorf("%s: byte %d of %d flipped: want exit 1, got %v", rel, off, len(orig), r)
			} else if !strings.Contains(r.stdout, "\nFAILED: ") {
				t.Errorf("%s: byte %d flipped: no FAILED line:\n%v", rel, off, r)
			}
			if err := os.WriteFile(f, orig, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := verify(); r.code != exitOK {
		t.Fatalf("after restoring every file: %v", r)
	}
}

// leaseFiles returns the lease objects of the fixture's logs.
func (fx *fixture) leaseFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fx.dir, "audit", "_lease", "*", "*"))
	if err != nil || len(files) != len(fx.logs) {
		t.Fatalf("lease files %v, %v", files, err)
	}
	return files
}

// TestVerifyDeletedObjects deletes each audit object in turn. A deleted
// batch always fails, and so does a deleted registry entry (the first step
// of erasing a log) and a deleted final checkpoint (the log's released
// lease says it was closed there). A deleted plain checkpoint loses
// nothing (a later one covers the same records), nor does a deleted
// lease (its absence proves nothing).
func TestVerifyDeletedObjects(t *testing.T) {
	fx := newFixture(t)
	for _, f := range append(fx.auditFiles(t), fx.leaseFiles(t)...) {
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(fx.dir, f)
		args := []string{"audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey}
		r := runCLI(t, nil, args...)
		strict := runCLI(t, nil, append(args, "--require-sealed")...)
		switch {
		case strings.Contains(rel, "_registry"):
			if r.code != exitFailed || !strings.Contains(r.stdout, string(audit.ClassUnregistered)) {
				t.Errorf("%s deleted: want exit 1 with %s, got %v", rel, audit.ClassUnregistered, r)
			}
		case strings.Contains(rel, "_lease"):
			if r.code != exitOK || strict.code != exitOK {
				t.Errorf("%s deleted: want exit 0, got %v\n%v", rel, r, strict)
			}
		case !strings.Contains(rel, "checkpoints"):
			if r.code != exitFailed {
				t.Errorf("%s deleted: want exit 1, got %v", rel, r)
			}
		case strings.HasSuffix(rel, "-final"):
			if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: ") || !strings.Contains(r.stdout, string(audit.ClassReopened)) {
				t.Errorf("%s deleted: want exit 1 with %s, got %v", rel, audit.ClassReopened, r)
			}
		default:
			if r.code != exitOK || strict.code != exitOK {
				t.Errorf("%s deleted (a later checkpoint covers it): want exit 0, got %v\n%v", rel, r, strict)
			}
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyWrongKey(t *testing.T) {
	fx := newFixture(t)
	_, other, err := audit.GenerateKey("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", other)
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: ") {
		t.Fatalf("foreign key: want exit 1 and FAILED, got %v", r)
	}
}

func TestVerifyEmptyStoreFails(t *testing.T) {
	dir := t.TempDir()
	_, vk, err := audit.GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "audit", "verify", "--store", dir, "--verifier-key", vk)
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: no audit log") {
		t.Fatalf("empty store: want exit 1, got %v", r)
	}
}

func TestVerifyStoreDirMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	_, vk, _ := audit.GenerateKey("k")
	r := runCLI(t, nil, "audit", "verify", "--store", missing, "--verifier-key", vk)
	if r.code != exitUsage {
		t.Fatalf("missing store dir: want exit 2, got %v", r)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("verify created the mistyped store directory")
	}
}

func TestVerifyKeyErrors(t *testing.T) {
	fx := newFixture(t)
	signer, verifier, err := audit.GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
	}{
		{"both key flags", []string{"--verifier-key", verifier, "--verifier-key-file", write("k1", verifier)}},
		{"garbage key", []string{"--verifier-key", "not-a-key"}},
		{"signer key", []string{"--verifier-key", signer}},
		{"signer key file", []string{"--verifier-key-file", write("k2", signer+"\n")}},
		{"two lines", []string{"--verifier-key-file", write("k3", verifier+"\n"+verifier+"\n")}},
		{"escape in key", []string{"--verifier-key", "a\x1b[2J+01234567+AQ"}},
		{"missing key file", []string{"--verifier-key-file", filepath.Join(dir, "nope")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"audit", "verify", "--store", fx.dir}, tt.args...)...)
			if r.code != exitUsage {
				t.Fatalf("want exit 2, got %v", r)
			}
			if strings.Contains(r.stdout+r.stderr, "PRIVATE+KEY") {
				t.Fatalf("the signer key was echoed:\n%v", r)
			}
		})
	}
}

func TestVerifyPublishedKeyErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content []byte // nil: delete it
	}{
		{"missing", nil},
		{"garbage", []byte("garbage\n")},
		{"escape", []byte("x\x1b]0;pwned\x07+01234567+AQ\n")},
		{"huge", bytes.Repeat([]byte("a"), maxKeyFile+1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			p := filepath.Join(fx.dir, "system", "audit-verifier")
			var err error
			if tt.content == nil {
				err = os.Remove(p)
			} else {
				err = os.WriteFile(p, tt.content, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, nil, "audit", "verify", "--store", fx.dir)
			if r.code != exitUsage {
				t.Fatalf("want exit 2, got %v", r)
			}
			if strings.Contains(r.stdout+r.stderr, "\x1b") {
				t.Fatal("a terminal escape from the store reached the output")
			}
		})
	}
}

func TestVerifyState(t *testing.T) {
	fx := newFixture(t)
	statePath := filepath.Join(t.TempDir(), "verify.state")
	verify := func() result {
		return runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey, "--state", statePath)
	}

	// First run: creates the state with every log at its full size.
	if r := verify(); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var sf stateFile
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatalf("state is not JSON: %v\n%s", err, b)
	}
	if sf.Version != stateVersion || sf.Key != fx.verifierKey || len(sf.Logs) != 2 ||
		sf.Logs[fx.logs[0]].Size != int64(len(fixtureLogA())) || sf.Logs[fx.logs[1]].Size != int64(len(fixtureLogB())) {
		t.Fatalf("state after first run:\n%s", b)
	}
	// Second run: reads it and passes.
	if r := verify(); r.code != exitOK {
		t.Fatalf("second run: %v", r)
	}

	// An attacker removes a whole log (its batches and checkpoints): the
	// remaining log verifies on its own, but the state catches it.
	logDir := filepath.Join(fx.dir, "audit", fx.logs[1])
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.Rename(logDir, backup); err != nil {
		t.Fatal(err)
	}
	// The registry entry its writer left says it existed.
	if r := runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey); r.code != exitFailed || !strings.Contains(r.stdout, string(audit.ClassMissing)) {
		t.Fatalf("log removed, without state: want exit 1 with %s, got %v", audit.ClassMissing, r)
	}
	r := verify()
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: ") || !strings.Contains(r.stdout, string(audit.ClassRollback)) {
		t.Fatalf("log removed: want exit 1 with a rollback, got %v", r)
	}
	after, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, b) {
		t.Fatalf("state changed by a failed run:\nbefore %s\nafter %s", b, after)
	}
	if err := os.Rename(backup, logDir); err != nil {
		t.Fatal(err)
	}
	if r := verify(); r.code != exitOK {
		t.Fatalf("after restoring the log: %v", r)
	}
}

// TestVerifyStateRollback replaces a log with an older copy of itself: a
// consistent, validly signed prefix that stored checkpoints alone cannot
// tell from a live log. Only the state file can.
func TestVerifyStateRollback(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openFS(t, dir)
	a, vk := newAppender(t, st, "k", audit.AppenderOptions{CheckpointEvery: time.Hour, CheckpointRecords: 1000})
	recs := fixtureLogA()
	for _, r := range recs[:2] {
		if _, err := a.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "audit", a.LogID())
	leaseDir := filepath.Join(dir, "audit", "_lease", a.LogID())
	old, oldLease := filepath.Join(t.TempDir(), "old"), filepath.Join(t.TempDir(), "lease")
	if err := os.CopyFS(old, os.DirFS(logDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(oldLease, os.DirFS(leaseDir)); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[2:] {
		if _, err := a.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}

	statePath := filepath.Join(t.TempDir(), "state")
	verify := func(withState bool) result {
		args := []string{"audit", "verify", "--store", dir, "--verifier-key", vk}
		if withState {
			args = append(args, "--state", statePath)
		}
		return runCLI(t, nil, args...)
	}
	if r := verify(true); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}

	// The attacker puts the old copy back in place of the whole log.
	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(logDir, os.DirFS(old)); err != nil {
		t.Fatal(err)
	}
	// The log's released lease still vouches for every record.
	if r := verify(false); r.code != exitFailed || !strings.Contains(r.stdout, string(audit.ClassTruncated)) {
		t.Fatalf("old copy, current lease: want exit 1 with %s, got %v", audit.ClassTruncated, r)
	}
	// The lease put back as it was too.
	if err := os.RemoveAll(leaseDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(leaseDir, os.DirFS(oldLease)); err != nil {
		t.Fatal(err)
	}
	if r := verify(false); r.code != exitOK {
		t.Fatalf("without state the old copy looks like a live log (as documented); got %v", r)
	}
	r := verify(true)
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: ") || !strings.Contains(r.stdout, string(audit.ClassRollback)) {
		t.Fatalf("rolled-back log: want exit 1 with a rollback, got %v", r)
	}
}

func TestVerifyStateErrors(t *testing.T) {
	fx := newFixture(t)
	dir := t.TempDir()
	for _, tt := range []struct{ name, content string }{
		{"not json", "{"},
		{"wrong version", `{"version":4,"logs":{}}`},
		{"unknown field", `{"version":1,"logs":{},"x":1}`},
		{"bad hash", `{"version":1,"logs":{"abc":{"size":1,"hash":"nope"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey, "--state", p)
			if r.code != exitUsage {
				t.Fatalf("want exit 2, got %v", r)
			}
			if b, _ := os.ReadFile(p); string(b) != tt.content {
				t.Fatal("a bad state file was overwritten")
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		p := filepath.Join(dir, "no-such-dir", "state")
		r := runCLI(t, nil, "audit", "verify", "--store", fx.dir, "--verifier-key", fx.verifierKey, "--state", p)
		if r.code != exitUsage || r.stdout != "" {
			t.Fatalf("want exit 2 before any verdict, got %v", r)
		}
	})
}

// TestVerifyChecksLedger: audit verify checks the single-use ledger against
// the logs. A release record whose ledger entry was deleted before its
// keep-until time (someone removing the evidence that a token was spent,
// so it could be replayed) fails verification, though every log is intact.
func TestVerifyChecksLedger(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	v := newTestVault(t, vault.Config{Store: openFS(t, dir), KEK: kektest.New(t)})
	id := putDocs(t, v, testImage(700), 1, "m", 0)[0]
	_, token := readDoc(t, v, id, "age-check")
	key := v.AuditVerifierKey()
	if err := v.Close(ctx); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, nil, "audit", "verify", "--store", dir, "--verifier-key", key)
	if r.code != exitOK || !strings.Contains(r.stderr, "1 ledger entries, 1 folded") {
		t.Fatalf("intact store: %v", r)
	}
	entries, err := filepath.Glob(filepath.Join(dir, "redeemed", "*"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger entries on disk: %v %v", entries, err)
	}
	if err := os.Remove(entries[0]); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, "audit", "verify", "--store", dir, "--verifier-key", key)
	if r.code != exitFailed || !strings.Contains(r.stdout, "single-use ledger") {
		t.Fatalf("ledger entry deleted: want exit %d and a ledger failure, got %v", exitFailed, r)
	}
	if strings.Contains(r.stdout+r.stderr, token) {
		t.Fatal("the token reached the output")
	}
}
