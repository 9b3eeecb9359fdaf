package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

// TestKEKCommands: idvault kek counts key records per KEK ID without any
// secret; kek rewrap moves the vault to another local keyset (passphrases
// from named sources) and then the new KEK alone opens every document;
// sweep takes --kek.
func TestKEKCommands(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	oldFile, newFile := filepath.Join(dir, "kek-old"), filepath.Join(dir, "kek-new")
	opts := kms.LocalOptions{Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	oldKEK, err := kms.CreateLocal(oldFile, []byte("old passphrase zq1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	newKEK, err := kms.CreateLocal(newFile, []byte("new passphrase zq2"), opts)
	if err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(dir, "new.pass")
	if err := os.WriteFile(passFile, []byte("new passphrase zq2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := fsstore.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: oldKEK})
	if err != nil {
		t.Fatal(err)
	}
	img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 700)...)
	var ids []string
	for range 4 {
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	v.Close(ctx)

	r := runCLI(t, nil, "kek", "--store", storeDir)
	if r.code != exitOK || !strings.Contains(r.stdout, "4 key records wrapped by "+oldKEK.ID()) || !strings.Contains(r.stdout, "keyset wrapped by "+oldKEK.ID()) {
		t.Fatalf("kek: %v", r)
	}
	env := map[string]string{"OLD_PASS": "old passphrase zq1"}
	if r := runCLI(t, env, "kek", "rewrap", "--store", storeDir, "--from", "local:"+oldFile, "--to", "local:"+newFile); r.code != exitUsage || !strings.Contains(r.stderr, "principal") {
		t.Fatalf("rewrap without --as: %v", r)
	}
	if r := runCLI(t, env, "kek", "rewrap", "--store", storeDir, "--as", "alice", "--from", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "--to", "local:"+newFile); r.code != exitUsage || !strings.Contains(r.stderr, "gcp-kms") {
		t.Fatalf("rewrap from a scheme this build does not link: %v", r)
	}
	r = runCLI(t, env, "kek", "rewrap", "--store", storeDir, "--as", "alice", "--reason", "CHG-7",
		"--from", "local:"+oldFile, "--from-passphrase", "env:OLD_PASS", "--to", "local:"+newFile, "--to-passphrase", "file:"+passFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "4 key records rewrapped") || !strings.Contains(r.stdout, "0 remaining") {
		t.Fatalf("rewrap: %v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "zq1") || strings.Contains(r.stdout+r.stderr, "zq2") {
		t.Fatal("a passphrase in the output")
	}
	// The rewrap is in the audit log, which still verifies.
	if r := runCLI(t, nil, "audit", "verify", "--store", storeDir); r.code != exitOK {
		t.Fatalf("verify after rewrap: %v", r)
	}
	if r := runCLI(t, nil, "audit", "query", "--store", storeDir, "--event", "rotate"); strings.Count(r.stdout, "alice") != 2 || !strings.Contains(r.stdout, "CHG-7") {
		t.Fatalf("rewrap audit records: %v", r)
	}
	r = runCLI(t, nil, "kek", "--store", storeDir)
	if r.code != exitOK || !strings.Contains(r.stdout, "4 key records wrapped by "+newKEK.ID()) || strings.Contains(r.stdout, oldKEK.ID()) {
		t.Fatalf("kek after rewrap: %v", r)
	}
	// The new KEK alone opens the vault and every document.
	w, err := vault.Open(ctx, vault.Config{Store: st, KEK: newKEK})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		g, err := w.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"})
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := w.Redeem(ctx, g.Token, vault.Requester{Principal: "r"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, img) {
			t.Fatalf("redeem after rewrap: %v", err)
		}
	}
	w.Close(ctx)
	// sweep opens the vault with --kek and --passphrase.
	r = runCLI(t, map[string]string{"IDVAULT_ACTOR": "cron:sweep"}, "sweep", "--store", storeDir, "--kek", "local:"+newFile, "--passphrase", "file:"+passFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "swept") {
		t.Fatalf("sweep --kek: %v", r)
	}
	r = runCLI(t, map[string]string{"IDVAULT_ACTOR": "cron:sweep", "IDVAULT_PASSPHRASE": "old passphrase zq1"}, "sweep", "--store", storeDir, "--kek", "local:"+oldFile)
	if r.code == exitOK || strings.Contains(r.stderr, "zq1") {
		t.Fatalf("sweep with the retired KEK: %v", r)
	}
}
