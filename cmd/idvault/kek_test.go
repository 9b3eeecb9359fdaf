package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

// TestKEKCommands: idvault kek counts key records per KEK ID without any
// secret; kek rewrap moves the vault to another local keyset (passphrases
// from named sources) and then the new KEK alone opens every document;
// sweep takes --kek.
func TestKEKCommands(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	oldFile, oldKEK := testKEKFile(t, "old passphrase zq1")
	newFile, newKEK := testKEKFile(t, "new passphrase zq2")
	passFile := filepath.Join(dir, "new.pass")
	if err := os.WriteFile(passFile, []byte("new passphrase zq2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openFS(t, storeDir)
	ctx := context.Background()
	v := newTestVault(t, vault.Config{Store: st, KEK: oldKEK})
	img := testImage(700)
	ids := putDocs(t, v, img, 4, "m", 0)
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
	w := newTestVault(t, vault.Config{Store: st, KEK: newKEK})
	for _, id := range ids {
		if got, _ := readDoc(t, w, id, "p"); !bytes.Equal(got, img) {
			t.Fatalf("redeem after rewrap: %d bytes, not the image", len(got))
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

// TestKEKCountsWhereKeysLive: with the key records in a store of their
// own, idvault kek counts them there when the key store is named (flag,
// variable or deployment file), and without it says that it cannot see
// them (exit 2) instead of printing "0 key records"; sweep and kek rewrap
// refuse the same case, where they would sweep every payload as an orphan
// or re-wrap the keyset but no record.
func TestKEKCountsWhereKeysLive(t *testing.T) {
	keys := t.TempDir()
	data, kekFile := newVaultDir(t, keys, 10)
	env := map[string]string{"IDVAULT_PASSPHRASE": testPass, "IDVAULT_ACTOR": "ops"}
	for _, args := range [][]string{
		{"kek", "--store", data},
		{"sweep", "--store", data, "--kek", "local:" + kekFile},
		{"kek", "rewrap", "--store", data, "--from", "local:" + kekFile, "--to", "local:" + kekFile},
	} {
		r := runCLI(t, env, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "holds payloads but no key record") || !strings.Contains(r.stderr, "--key-store") || strings.Contains(r.stdout, "0 key records") {
			t.Errorf("%q without the key store: %v", args, r)
		}
	}
	want := "key records counted in file://" + keys + "\n"
	for name, r := range map[string]result{
		"flag": runCLI(t, nil, "kek", "--store", data, "--key-store", keys),
		"env":  runCLI(t, map[string]string{"IDVAULT_KEY_STORE": keys}, "kek", "--store", data),
		"file": runCLI(t, nil, "kek", "--config", writeDeploymentFile(t, "store = "+data+"\nkey-store = "+keys+"\n")),
	} {
		if r.code != exitOK || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "      10 key records wrapped by ") {
			t.Errorf("key store from the %s: %v", name, r)
		}
	}
	// Naming the data store itself as the key store says "count here".
	if r := runCLI(t, nil, "kek", "--store", data, "--key-store", data); r.code != exitOK || !strings.Contains(r.stdout, "       0 key records\n") {
		t.Errorf("the data store named as its own key store: %v", r)
	}
	// A store with no document at all counts 0 without complaint.
	empty, _ := newVaultDir(t, "", 0)
	if r := runCLI(t, nil, "kek", "--store", empty); r.code != exitOK || !strings.Contains(r.stdout, "       0 key records\n") {
		t.Errorf("an empty vault: %v", r)
	}
	// sweep works with the key store named.
	if r := runCLI(t, env, "sweep", "--store", data, "--key-store", keys, "--kek", "local:"+kekFile); r.code != exitOK || !strings.Contains(r.stdout, "0 orphan payloads") {
		t.Errorf("sweep with the key store: %v", r)
	}
}

// TestKEKCreate: kek create makes a local keyset that opens with its
// passphrase, never overwrites, refuses a short passphrase and any other
// scheme, and prints no secret.
func TestKEKCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek-2026")
	const pass = "kek-create-passphrase-77"
	env := map[string]string{"NEW_PASS": pass}
	r := runCLI(t, env, "kek", "create", "local:"+path, "--passphrase", "env:NEW_PASS")
	if r.code != exitOK || !strings.HasSuffix(r.stdout, "\nlocal:"+path+"\n") || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatalf("kek create: %v", r)
	}
	k, err := kms.OpenLocal(path, []byte(pass))
	if err != nil {
		t.Fatalf("the new keyset: %v", err)
	}
	if !strings.Contains(r.stdout, "KEK ID "+k.ID()) {
		t.Errorf("the KEK ID is not printed: %v", r)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	before, _ := os.ReadFile(path)
	if r := runCLI(t, env, "kek", "create", "local:"+path, "--passphrase", "env:NEW_PASS"); r.code != exitUsage || !strings.Contains(r.stderr, "exists") {
		t.Errorf("over an existing keyset: %v", r)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("an existing keyset was overwritten")
	}
	// The passphrase source defaults to the deployment's, then to
	// $IDVAULT_PASSPHRASE.
	file := writeDeploymentFile(t, "passphrase = env:NEW_PASS\n")
	if r := runCLI(t, env, "kek", "create", "local:"+filepath.Join(dir, "k2"), "--config", file); r.code != exitOK {
		t.Errorf("passphrase source from the deployment: %v", r)
	} else if _, err := kms.OpenLocal(filepath.Join(dir, "k2"), []byte(pass)); err != nil {
		t.Errorf("k2: %v", err)
	}
	if r := runCLI(t, map[string]string{"IDVAULT_PASSPHRASE": pass}, "kek", "create", "local:"+filepath.Join(dir, "k3")); r.code != exitOK {
		t.Errorf("passphrase from $IDVAULT_PASSPHRASE: %v", r)
	}
	for _, tt := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"kek", "create", filepath.Join(dir, "bare")}, env},                                                         // not a URI
		{[]string{"kek", "create", "aws-kms://arn:aws:kms:eu-west-1:1:key/k"}, env},                                          // not local
		{[]string{"kek", "create"}, env},                                                                                     // nothing to create
		{[]string{"kek", "create", "local:" + filepath.Join(dir, "k4")}, nil},                                                // no passphrase
		{[]string{"kek", "create", "local:" + filepath.Join(dir, "k5")}, map[string]string{"IDVAULT_PASSPHRASE": "short-7"}}, // too short
		{[]string{"kek", "create", "local:" + filepath.Join(dir, "k6"), "--passphrase", pass}, env},                          // inline
	} {
		r := runCLI(t, tt.env, tt.args...)
		if r.code != exitUsage || r.stdout != "" || strings.Contains(r.stderr, pass) || strings.Contains(r.stderr, "short-7") {
			t.Errorf("%q: %v", tt.args, r)
		}
	}
	for _, k := range []string{"bare", "k4", "k5", "k6"} {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			t.Errorf("a refused kek create wrote %s", k)
		}
	}
}
