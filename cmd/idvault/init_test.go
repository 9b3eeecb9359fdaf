package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/mod/semver"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/s3store"
)

// testKEKFile creates a local keyset with cheap key derivation.
func testKEKFile(t *testing.T, pass string) (string, kms.KEK) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek")
	kek, err := kms.CreateLocal(path, []byte(pass), kms.LocalOptions{Time: 1, MemoryKiB: 8 << 10, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return path, kek
}

func freshBucketName(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "idv-init-" + hex.EncodeToString(b[:])
}

// TestInit runs idvault init against MinIO: it creates the object-lock
// data bucket and the unversioned key bucket, installs the backstop, opens
// the vault with write-once audit and prints the verifier key the vault
// really uses; run again, it checks and changes nothing; and it refuses
// every bucket that would silently lose a guarantee, before writing.
func TestInit(t *testing.T) {
	m := newMinioEnv(t)
	ctx := context.Background()
	srv, client := m.srv, m.client
	const pass = "init-passphrase-5521"
	kekFile, kek := testKEKFile(t, pass)
	env := m.env
	env["IDVAULT_PASSPHRASE"] = pass
	storeURL := func(bucket string) string { return m.url(bucket, nil) }
	data, keys := freshBucketName(t), freshBucketName(t)

	r := runCLI(t, env, "init", storeURL(data), "--key-bucket", keys, "--kek-file", kekFile, "--max-retention", "100h")
	if r.code != exitOK {
		t.Fatalf("init: %v", r)
	}
	if strings.Contains(r.stdout+r.stderr, srv.SecretKey()) || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatal("init printed a secret")
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	vk := lines[len(lines)-1]

	status, _, _, _, err := client.GetObjectLockConfig(ctx, data)
	if err != nil || status != "Enabled" {
		t.Fatalf("data bucket object lock = %q, %v", status, err)
	}
	if vc, err := client.GetBucketVersioning(ctx, keys); err != nil || vc.Status != "" && vc.Status != "Off" {
		t.Fatalf("key bucket versioning = %q, %v", vc.Status, err)
	}
	// The backstop expires only payloads tagged expirable (a held one is
	// tagged otherwise); its other rule only removes expired delete markers
	// and aborts stale uploads. Whether the rule then deletes anything
	// cannot be tested: lifecycle rules run in days.
	lc, err := client.GetBucketLifecycle(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	var expiring int
	for _, r := range lc.Rules {
		if r.Expiration.Days == 0 {
			if !r.Expiration.DeleteMarker || r.RuleFilter.Prefix != "blobs/" || r.NoncurrentVersionExpiration.NoncurrentDays != 0 {
				t.Fatalf("lifecycle rule %+v: want only expired delete markers under blobs/", r)
			}
			continue
		}
		expiring++
		f := r.RuleFilter.And
		if r.Expiration.Days != 6 || r.RuleFilter.Prefix != "" || f.Prefix != "blobs/" || len(f.Tags) != 1 ||
			f.Tags[0].Key != s3store.ExpiryTag || f.Tags[0].Value != "yes" {
			t.Fatalf("lifecycle rule %+v; want blobs/ tagged %s=yes after ceil(100h/24h)+1 = 6 days", r, s3store.ExpiryTag)
		}
	}
	if expiring != 1 || len(lc.Rules) != 2 {
		t.Fatalf("lifecycle = %+v; want one tagged expiration rule and one delete-marker rule", lc)
	}
	// The printed key is the one the vault signs with, and verify accepts it.
	dst, err := s3store.New(ctx, client, data, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kst, err := s3store.New(ctx, client, keys, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: dst, KEK: kek, Storage: vault.StorageConfig{KeyStore: kst}, Audit: vault.AuditConfig{RequireWriteOnce: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v.AuditVerifierKey() != vk {
		t.Fatalf("printed %q, the vault uses %q", vk, v.AuditVerifierKey())
	}
	img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 1000)...)
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"})
	if err != nil {
		t.Fatalf("Put on the initialised buckets: %v", err)
	}
	// The payload matches the backstop until it is held.
	for _, step := range []struct {
		hold func(context.Context, string, vault.Actor) error
		want string
	}{{nil, "yes"}, {v.Admin().Hold, "no"}} {
		if step.hold != nil {
			if err := step.hold(ctx, info.ID, vault.Actor{Principal: "legal"}); err != nil {
				t.Fatal(err)
			}
		}
		tg, err := client.GetObjectTagging(ctx, data, "blobs/"+info.ID, minio.GetObjectTaggingOptions{})
		if err != nil || tg.ToMap()[s3store.ExpiryTag] != step.want {
			t.Fatalf("payload tags %v, %v; want %s=%s", tg, err, s3store.ExpiryTag, step.want)
		}
	}
	v.Close(ctx)
	if r := runCLI(t, env, "audit", "verify", "--store", storeURL(data), "--verifier-key", vk); r.code != exitOK {
		t.Fatalf("verify with the printed key: %v", r)
	}

	// Again: everything exists and checks out; same key.
	r = runCLI(t, env, "init", "--store", storeURL(data), "--key-bucket", keys, "--kek-file", kekFile, "--max-retention", "100h")
	if r.code != exitOK || !strings.Contains(r.stdout, "exists, object lock on") || !strings.Contains(r.stdout, "exists, unversioned") || !strings.HasSuffix(r.stdout, vk+"\n") {
		t.Fatalf("second init: %v", r)
	}

	empty := func(t *testing.T, bucket string) {
		t.Helper()
		for o := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			t.Fatalf("a refused init wrote %q (%v)", o.Key, o.Err)
		}
	}
	t.Run("data bucket without object lock", func(t *testing.T) {
		plain := srv.NewBucket(t, false)
		r := runCLI(t, env, "init", storeURL(plain), "--key-bucket", freshBucketName(t), "--kek-file", kekFile)
		if r.code != exitUsage || !strings.Contains(r.stderr, "without object lock") {
			t.Fatalf("%v", r)
		}
		empty(t, plain)
	})
	t.Run("versioned key bucket", func(t *testing.T) {
		versioned := srv.NewVersionedBucket(t)
		fresh := freshBucketName(t)
		r := runCLI(t, env, "init", storeURL(fresh), "--key-bucket", versioned, "--kek-file", kekFile)
		if r.code != exitUsage || !strings.Contains(r.stderr, "keeps object versions") {
			t.Fatalf("%v", r)
		}
		empty(t, fresh)
		empty(t, versioned)
	})
	t.Run("object-locked key bucket", func(t *testing.T) {
		locked := srv.NewBucket(t, true)
		r := runCLI(t, env, "init", storeURL(freshBucketName(t)), "--key-bucket", locked, "--kek-file", kekFile)
		if r.code != exitUsage || !strings.Contains(r.stderr, "keeps object versions") {
			t.Fatalf("%v", r)
		}
	})
	for _, args := range [][]string{
		{"init", storeURL(data), "--key-bucket", data, "--kek-file", kekFile},                            // one bucket for both
		{"init", storeURL(data), "--kek-file", kekFile},                                                  // no key bucket
		{"init", t.TempDir(), "--key-bucket", keys, "--kek-file", kekFile},                               // not S3
		{"init", storeURL(data), "--store", storeURL(data), "--key-bucket", keys, "--kek-file", kekFile}, // twice
		{"init", storeURL(data), "extra", "--key-bucket", keys},
	} {
		if r := runCLI(t, env, args...); r.code != exitUsage || r.stdout != "" {
			t.Errorf("%q: %v", args, r)
		}
	}
}

// TestTokenRotate: the command rotates the key, records who and why, and a
// token sealed before the rotation still opens.
func TestTokenRotate(t *testing.T) {
	ctx := context.Background()
	const pass = "rotate-passphrase-8812"
	kekFile, kek := testKEKFile(t, pass)
	dir := filepath.Join(t.TempDir(), "store")
	st := openFS(t, dir)
	v := newTestVault(t, vault.Config{Store: st, KEK: kek})
	defer v.Close(ctx)
	id := putDocs(t, v, testImage(1000), 1, "m", 0)[0]
	before, err := v.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IDVAULT_PASSPHRASE": pass}
	if r := runCLI(t, env, "token", "rotate", "--store", dir, "--kek-file", kekFile); r.code != exitUsage || !strings.Contains(r.stderr, "--as") {
		t.Fatalf("rotate without --as: %v", r)
	}
	r := runCLI(t, env, "token", "rotate", "--as", "ops-1", "--reason", "quarterly", "--store", dir, "--kek-file", kekFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "rotated") {
		t.Fatalf("rotate: %v", r)
	}
	rc, _, err := v.Redeem(ctx, before.Token, vault.Requester{Principal: "r"})
	if err != nil {
		t.Fatalf("a token from before the rotation: %v", err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	n := 0
	for rec, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRotate}) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Principal == "ops-1" && strings.Contains(rec.Detail, "quarterly") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d rotation records by ops-1, want 1", n)
	}
	// A new grant is sealed under the new key: the vault's token key changed.
	after := newTestVault(t, vault.Config{Store: st, KEK: kek, Now: func() time.Time { return time.Now() }})
	defer after.Close(ctx)
	g, err := after.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"})
	if err != nil || g.Token[:12] == before.Token[:12] {
		t.Fatalf("grant after rotation: %v", err)
	}
}

// TestVersion: a test binary, like a binary built from a checkout, has no
// module version recorded, so version prints the fallback, a real
// version; the one go install records is checked by the outside-module
// test in internal/release.
func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "idvault "+fallbackVersion) || !strings.Contains(r.stdout, runtime.Version()) || r.stderr != "" {
		t.Fatalf("%v", r)
	}
	if !semver.IsValid(fallbackVersion) || strings.Contains(r.stdout, "unknown") {
		t.Fatalf("not a version: %v", r)
	}
	if r := runCLI(t, nil, "version", "extra"); r.code != exitUsage {
		t.Fatalf("version with an argument: %v", r)
	}
}

// TestInitDirectory: init on a directory deployment creates the stores and
// the keyset, writes a deployment file holding no secret, from which every
// other command runs with no other flag; run again it checks and changes
// nothing; it refuses a file describing another store, and a file pinning
// another verifier key (exit 1: the vault's keyset is not the pinned one).
func TestInitDirectory(t *testing.T) {
	dir := t.TempDir()
	data, keys, kekPath := filepath.Join(dir, "data"), filepath.Join(dir, "keys"), filepath.Join(dir, "kek")
	cfg := filepath.Join(dir, "etc", "idvault.conf")
	state, witness := filepath.Join(dir, "verify.state"), filepath.Join(dir, "heads")
	const pass = "init-directory-passphrase-4410"
	env := map[string]string{"KEK_PASS": pass}
	r := runCLI(t, env, "init", data, "--key-store", keys, "--kek", "local:"+kekPath, "--create-kek", "--passphrase", "env:KEK_PASS",
		"--config", cfg, "--as", "ops-1", "--state", state, "--witness", witness)
	if r.code != exitOK || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatalf("init: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	vk := lines[len(lines)-1]
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), pass) {
		t.Fatal("the deployment file holds the passphrase")
	}
	d, err := parseDeployment(raw)
	if err != nil {
		t.Fatalf("the file init wrote: %v\n%s", err, raw)
	}
	want := map[string]string{"store": "file://" + data, "key-store": "file://" + keys, "kek": "local:" + kekPath, "passphrase": "env:KEK_PASS",
		"actor": "ops-1", "verifier-key": vk, "state": state, "witness": witness}
	for k, v := range want {
		if d.values[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, d.values[k], v, raw)
		}
	}
	if _, err := os.Stat(witness); err != nil {
		t.Errorf("no witness written: %v", err)
	}

	// Every command runs from the file alone.
	for _, args := range [][]string{
		{"sweep"}, {"token", "rotate", "--reason", "init test"}, {"kek"},
		{"audit", "verify", "--require-sealed"}, {"audit", "checkpoint"}, {"audit", "verify"},
	} {
		r := runCLI(t, env, append(args, "--config", cfg)...)
		if r.code != exitOK || strings.Contains(r.stdout+r.stderr, pass) {
			t.Fatalf("%q from the deployment file: %v", args, r)
		}
		if strings.Contains(r.stderr, "warning: the verifier key was read from the store") {
			t.Errorf("%q did not use the pinned key: %v", args, r)
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("verify kept no state: %v", err)
	}

	// Again, from the file alone: it checks, and leaves the file as it was.
	r = runCLI(t, env, "init", "--config", cfg)
	if r.code != exitOK || !strings.HasSuffix(r.stdout, vk+"\n") || !strings.Contains(r.stdout, "exists") {
		t.Fatalf("second init: %v", r)
	}
	if again, _ := os.ReadFile(cfg); !bytes.Equal(again, raw) {
		t.Fatalf("second init changed the file:\n%s", again)
	}
	// A file describing another deployment is not overwritten.
	other := filepath.Join(dir, "other")
	if r := runCLI(t, env, "init", other, "--config", cfg); r.code != exitUsage || !strings.Contains(r.stderr, "another store") {
		t.Errorf("init of another store over the file: %v", r)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a refused init created the store")
	}
	// Nor one moving the key records elsewhere, or into the data store.
	for _, args := range [][]string{
		{"init", "--config", cfg, "--key-store", filepath.Join(dir, "keys2")},
		{"init", "--config", cfg, "--key-store", data},
	} {
		if r := runCLI(t, env, args...); r.code != exitUsage || !strings.Contains(r.stderr, "another key store") {
			t.Errorf("%q: %v", args, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keys2")); err == nil {
		t.Error("a refused init created the key store")
	}
	if again, _ := os.ReadFile(cfg); !bytes.Equal(again, raw) {
		t.Fatalf("a refused init changed the file:\n%s", again)
	}
	// A file pinning another verifier key: init and verify both fail.
	_, foreign, err := audit.GenerateKey("idvault-audit")
	if err != nil {
		t.Fatal(err)
	}
	tampered := updateDeployment(raw, map[string]string{"verifier-key": foreign})
	if err := os.WriteFile(cfg, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, env, "init", "--config", cfg); r.code != exitFailed || !strings.Contains(r.stderr, "verifier key") {
		t.Errorf("init with a foreign pinned key: %v", r)
	}
	if after, _ := os.ReadFile(cfg); !bytes.Equal(after, tampered) {
		t.Error("init rewrote a file pinning another key")
	}
	if r := runCLI(t, env, "audit", "verify", "--config", cfg); r.code != exitFailed {
		t.Errorf("verify with a foreign pinned key: %v", r)
	}

	// The deprecated flags still work, one more release.
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2 := filepath.Join(dir, "old.conf")
	r = runCLI(t, nil, "init", filepath.Join(dir, "data2"), "--kek-file", filepath.Join(dir, "kek2"), "--passphrase-file", passFile, "--create-kek", "--config", cfg2)
	if r.code != exitOK {
		t.Fatalf("init with --kek-file and --passphrase-file: %v", r)
	}
	if d, err := readDeployment(cfg2); err != nil || d.values["kek"] != "local:"+filepath.Join(dir, "kek2") || d.values["passphrase"] != "file:"+passFile {
		t.Fatalf("deployment from the deprecated flags: %+v, %v", d, err)
	}
	if r := runCLI(t, map[string]string{"IDVAULT_ACTOR": "ops"}, "sweep", "--config", cfg2); r.code != exitOK {
		t.Errorf("sweep from it: %v", r)
	}
}
