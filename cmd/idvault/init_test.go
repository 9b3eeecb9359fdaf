package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
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
	if testing.Short() {
		t.Skip("MinIO test")
	}
	ctx := context.Background()
	srv := miniotest.Server(t)
	client := srv.Client(t)
	const pass = "init-passphrase-5521"
	kekFile, kek := testKEKFile(t, pass)
	env := map[string]string{"MINIO_ROOT_USER": srv.AccessKey(), "MINIO_ROOT_PASSWORD": srv.SecretKey(), "IDVAULT_PASSPHRASE": pass}
	storeURL := func(bucket string) string {
		return "s3://" + bucket + "?" + url.Values{"endpoint": {srv.Endpoint()}, "tls": {"false"}}.Encode()
	}
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
	v, err := vault.Open(ctx, vault.Config{Store: dst, KeyStore: kst, KEK: kek, RequireWriteOnceAudit: true})
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
	}{{nil, "yes"}, {v.Hold, "no"}} {
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
	st, err := fsstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 1000)...)
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := v.Grant(ctx, info.ID, vault.Access{Principal: "r", Purpose: "p"})
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
	after, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek, Now: func() time.Time { return time.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close(ctx)
	g, err := after.Grant(ctx, info.ID, vault.Access{Principal: "r", Purpose: "p"})
	if err != nil || g.Token[:12] == before.Token[:12] {
		t.Fatalf("grant after rotation: %v", err)
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "idvault ") || !strings.Contains(r.stdout, runtime.Version()) || r.stderr != "" {
		t.Fatalf("%v", r)
	}
	if r := runCLI(t, nil, "version", "extra"); r.code != exitUsage {
		t.Fatalf("version with an argument: %v", r)
	}
}
