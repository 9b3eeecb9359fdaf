package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

func TestSweepCommand(t *testing.T) {
	dir := t.TempDir()
	storeDir, kekFile := filepath.Join(dir, "store"), filepath.Join(dir, "kek")
	pass := "correct horse battery staple"
	kek, err := kms.CreateLocal(kekFile, []byte(pass), kms.LocalOptions{Time: 1, MemoryKiB: 8 << 10, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Uploads made 10 hours ago (the store's clock then too): the short
	// ones are past their deadline on the real clock the CLI uses.
	past := func() time.Time { return time.Now().Add(-10 * time.Hour) }
	st, err := fsstore.OpenWithOptions(storeDir, fsstore.Options{Now: past})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v := newTestVault(t, vault.Config{Store: st, KEK: kek, Now: past})
	img := testImage(1000)
	short := putDocs(t, v, img, 3, "m", time.Hour)
	long := putDocs(t, v, img, 3, "m", 0)
	v.Close(ctx)

	env := map[string]string{"IDVAULT_PASSPHRASE": pass, "IDVAULT_ACTOR": "cron:test"}
	if r := runCLI(t, env, "sweep", "--store", storeDir); r.code != exitUsage || !strings.Contains(r.stderr, "kek-file") {
		t.Fatalf("sweep without a keyset: %v", r)
	}
	if r := runCLI(t, map[string]string{"IDVAULT_ACTOR": "cron:test"}, "sweep", "--store", storeDir, "--kek-file", kekFile); r.code != exitUsage {
		t.Fatalf("sweep without a passphrase: %v", r)
	}
	if r := runCLI(t, map[string]string{"IDVAULT_PASSPHRASE": "not-the-passphrase-q7", "IDVAULT_ACTOR": "cron:test"}, "sweep", "--store", storeDir, "--kek-file", kekFile); r.code != exitUsage || strings.Contains(r.stderr, "q7") {
		t.Fatalf("sweep with a wrong passphrase: %v", r)
	}
	r := runCLI(t, env, "sweep", "--store", storeDir, "--kek-file", kekFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "3 expired and shredded") {
		t.Fatalf("sweep: %v", r)
	}
	if strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatal("passphrase in the output")
	}
	// What the sweep removed is gone; the rest reads.
	v = newTestVault(t, vault.Config{Store: st, KEK: kek})
	defer v.Close(ctx)
	for _, id := range short {
		if _, err := v.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"}); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("swept document: %v", err)
		}
	}
	for _, id := range long {
		if _, err := v.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"}); err != nil {
			t.Fatalf("live document: %v", err)
		}
	}
	// The deletion receipts verify.
	if r := runCLI(t, nil, "audit", "verify", "--store", storeDir); r.code != exitOK {
		t.Fatalf("verify after sweep: %v", r)
	}
	if r := runCLI(t, nil, "audit", "query", "--store", storeDir, "--event", "expire"); strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("expiry receipts: %v", r)
	}
}
