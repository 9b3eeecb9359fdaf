package main

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
)

// minioEnv is the test MinIO server for a CLI test (skipped under -short):
// the server, a client, the environment carrying its root credentials (as
// a deployment passes them), and the s3:// URL of one of its buckets.
type minioEnv struct {
	srv    *miniotest.Srv
	client *minio.Client
	env    map[string]string
}

func newMinioEnv(t *testing.T) *minioEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("MinIO test")
	}
	srv := miniotest.Server(t)
	return &minioEnv{srv: srv, client: srv.Client(t),
		env: map[string]string{"MINIO_ROOT_USER": srv.AccessKey(), "MINIO_ROOT_PASSWORD": srv.SecretKey()}}
}

// url is the s3:// URL of bucket on the server, plain HTTP, with extra
// query parameters (such as prefix) added.
func (m *minioEnv) url(bucket string, extra url.Values) string {
	q := url.Values{"endpoint": {m.srv.Endpoint()}, "tls": {"false"}}
	for k, v := range extra {
		q[k] = v
	}
	return "s3://" + bucket + "?" + q.Encode()
}

// s3Fixture writes the fixture's logs into a fresh bucket of the test MinIO
// (under a prefix) and returns the store URL, the environment with
// credentials, the verifier key and the bucket.
func s3Fixture(t *testing.T, objectLock bool) (storeURL string, env map[string]string, vk, bucket string, srv *miniotest.Srv) {
	t.Helper()
	m := newMinioEnv(t)
	bucket = m.srv.NewBucket(t, objectLock)
	st, err := s3store.New(context.Background(), m.client, bucket, s3store.Options{Prefix: "tenant-a"})
	if err != nil {
		t.Fatal(err)
	}
	vk, _ = writeLogs(t, st, fixtureLogA(), fixtureLogB())
	return m.url(bucket, url.Values{"prefix": {"tenant-a"}}), m.env, vk, bucket, m.srv
}

func TestS3(t *testing.T) {
	storeURL, env, vk, bucket, srv := s3Fixture(t, true)
	noSecret := func(t *testing.T, r result) {
		t.Helper()
		if strings.Contains(r.stdout+r.stderr, srv.SecretKey()) {
			t.Fatal("the secret key was printed")
		}
	}

	t.Run("verify", func(t *testing.T) {
		r := runCLI(t, env, "audit", "verify", "--store", storeURL, "--verifier-key", vk)
		noSecret(t, r)
		if r.code != exitOK || !strings.HasSuffix(r.stdout, "\nOK\n") {
			t.Fatalf("want exit 0 and OK, got %v", r)
		}
	})
	t.Run("verify with store from env and other credential names", func(t *testing.T) {
		env2 := map[string]string{"IDVAULT_STORE": storeURL, "AWS_ACCESS_KEY_ID": srv.AccessKey(), "AWS_SECRET_ACCESS_KEY": srv.SecretKey()}
		r := runCLI(t, env2, "audit", "verify")
		noSecret(t, r)
		if r.code != exitOK || !strings.Contains(r.stderr, "warning:") {
			t.Fatalf("want exit 0 with the unpinned-key warning, got %v", r)
		}
	})
	t.Run("query", func(t *testing.T) {
		r := runCLI(t, env, "audit", "query", "--store", storeURL, "--event", "redeem", "--outcome", "refused")
		noSecret(t, r)
		if r.code != exitOK || len(decodeLines(t, r.stdout)) != 3 {
			t.Fatalf("want 3 refused redemptions, got %v", r)
		}
	})
	t.Run("stats", func(t *testing.T) {
		r := runCLI(t, env, "audit", "stats", "--store", storeURL, "--format", "table")
		noSecret(t, r)
		if r.code != exitOK || !strings.Contains(r.stdout, "TOTAL") {
			t.Fatalf("want exit 0 and a total, got %v", r)
		}
	})
	t.Run("wrong prefix has no logs", func(t *testing.T) {
		u := strings.Replace(storeURL, "tenant-a", "tenant-b", 1)
		r := runCLI(t, env, "audit", "verify", "--store", u, "--verifier-key", vk)
		if r.code != exitFailed {
			t.Fatalf("want exit 1 (no audit log), got %v", r)
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		bad := map[string]string{"MINIO_ROOT_USER": srv.AccessKey(), "MINIO_ROOT_PASSWORD": "wrong-" + srv.SecretKey()}
		r := runCLI(t, bad, "audit", "verify", "--store", storeURL, "--verifier-key", vk)
		noSecret(t, r)
		if r.code != exitUsage || strings.Contains(r.stdout+r.stderr, "wrong-") {
			t.Fatalf("want exit 2 without the password, got %v", r)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		u := strings.Replace(storeURL, bucket, "idv-no-such-bucket", 1)
		r := runCLI(t, env, "audit", "query", "--store", u)
		noSecret(t, r)
		if r.code != exitUsage {
			t.Fatalf("want exit 2, got %v", r)
		}
	})
}

// TestS3Tamper flips one byte of each audit object in a bucket without
// object lock (where an attacker with the credentials can overwrite).
func TestS3Tamper(t *testing.T) {
	storeURL, env, vk, bucket, srv := s3Fixture(t, false)
	ctx := context.Background()
	client := srv.Client(t)
	var names []string
	for obj := range client.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: "tenant-a/audit/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		if strings.Contains(obj.Key, "/_lease/") {
			continue // leases: hints between writers, never believed by Verify
		}
		names = append(names, obj.Key)
	}
	if len(names) < 10 {
		t.Fatalf("only %d audit objects", len(names))
	}
	put := func(name string, b []byte) {
		if _, err := client.PutObject(ctx, bucket, name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		o, err := client.GetObject(ctx, bucket, name, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		orig, err := io.ReadAll(o)
		o.Close()
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(orig)
		b[len(b)/2] ^= 0xff
		put(name, b)
		if r := runCLI(t, env, "audit", "verify", "--store", storeURL, "--verifier-key", vk); r.code != exitFailed {
			t.Errorf("%s tampered: want exit 1, got %v", name, r)
		}
		put(name, orig)
	}
	if r := runCLI(t, env, "audit", "verify", "--store", storeURL, "--verifier-key", vk); r.code != exitOK {
		t.Fatalf("after restoring: %v", r)
	}
}

// TestS3CredentialsFile: with s3-credentials = file:PATH (an AWS
// credentials file) the CLI takes the keys from that file and from nothing
// else, not even credentials in the environment, and prints neither.
func TestS3CredentialsFile(t *testing.T) {
	storeURL, _, vk, _, srv := s3Fixture(t, true)
	dir := t.TempDir()
	creds := filepath.Join(dir, "s3.credentials")
	content := "[default]\naws_access_key_id = " + srv.AccessKey() + "\naws_secret_access_key = " + srv.SecretKey() + "\n"
	if err := os.WriteFile(creds, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeDeploymentFile(t, "store = "+storeURL+"\ns3-credentials = file:"+creds+"\nverifier-key = "+vk+"\n")
	wrongEnv := map[string]string{"MINIO_ROOT_USER": srv.AccessKey(), "MINIO_ROOT_PASSWORD": "wrong-" + secretMark}
	for name, env := range map[string]map[string]string{"no credentials in the environment": nil, "wrong ones there": wrongEnv} {
		r := runCLI(t, env, "audit", "verify", "--config", file)
		if r.code != exitOK || strings.Contains(r.stdout+r.stderr, srv.SecretKey()) || strings.Contains(r.stdout+r.stderr, secretMark) {
			t.Errorf("%s: %v", name, r)
		}
	}
	// The flag and the variable name a file too; a missing one is an error.
	if r := runCLI(t, wrongEnv, "audit", "verify", "--store", storeURL, "--verifier-key", vk, "--s3-credentials", "file:"+creds); r.code != exitOK {
		t.Errorf("--s3-credentials: %v", r)
	}
	r := runCLI(t, map[string]string{"IDVAULT_S3_CREDENTIALS": "file:" + filepath.Join(dir, "missing")}, "audit", "verify", "--config", file)
	if r.code != exitUsage || !strings.Contains(r.stderr, "credentials file") {
		t.Errorf("a missing credentials file: %v", r)
	}
	// Without the file, the wrong environment is used, and fails.
	if r := runCLI(t, wrongEnv, "audit", "verify", "--store", storeURL, "--verifier-key", vk); r.code != exitUsage || strings.Contains(r.stderr, secretMark) {
		t.Errorf("the wrong environment: %v", r)
	}
	if r := runCLI(t, nil, "audit", "verify", "--config", file, "--s3-credentials", secretMark); r.code != exitUsage || strings.Contains(r.stderr, secretMark) {
		t.Errorf("keys given as the source: %v", r)
	}
}
