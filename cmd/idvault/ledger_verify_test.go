package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/vault"
)

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
