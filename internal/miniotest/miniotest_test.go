package miniotest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestServerBuckets(t *testing.T) {
	srv := Server(t)
	if Server(t) != srv {
		t.Fatal("Server did not return the shared server")
	}
	c := srv.Client(t)
	ctx := context.Background()

	tests := []struct {
		name       string
		make       func(testing.TB) string
		lock       bool
		versioning bool
	}{
		{"plain", func(tb testing.TB) string { return srv.NewBucket(tb, false) }, false, false},
		{"locked", func(tb testing.TB) string { return srv.NewBucket(tb, true) }, true, true},
		{"versioned", srv.NewVersionedBucket, false, true},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.make(t)
			if seen[b] {
				t.Fatalf("bucket name reused")
			}
			seen[b] = true
			ok, err := c.BucketExists(ctx, b)
			if err != nil || !ok {
				t.Fatalf("BucketExists = %v, %v", ok, err)
			}
			_, _, _, _, err = c.GetObjectLockConfig(ctx, b)
			if got := err == nil; got != tc.lock {
				t.Errorf("object lock = %v (err %v), want %v", got, err, tc.lock)
			}
			v, err := c.GetBucketVersioning(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if v.Enabled() != tc.versioning {
				t.Errorf("versioning = %v, want %v", v.Enabled(), tc.versioning)
			}
		})
	}
}

func TestServerListensOnLoopback(t *testing.T) {
	srv := Server(t)
	if !strings.HasPrefix(srv.Endpoint(), "127.0.0.1:") {
		t.Fatalf("endpoint %q is not on 127.0.0.1", srv.Endpoint())
	}
	// Wrong credentials are refused: the server really uses ours.
	c, err := newClient(srv.Endpoint(), srv.AccessKey(), srv.SecretKey()+"x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListBuckets(context.Background())
	if minio.ToErrorResponse(err).StatusCode != 403 {
		t.Fatalf("ListBuckets with a wrong secret: %v, want 403", err)
	}
}

func TestSrvDoesNotPrintSecrets(t *testing.T) {
	srv := Server(t)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, srv)
		if strings.Contains(out, srv.SecretKey()) || strings.Contains(out, srv.AccessKey()) {
			t.Errorf("%s prints credentials", verb)
		}
	}
}

// TestNewUser: a user made by NewUser has exactly the rights of its policy
// (MinIO decrypted the add-user body, so adminEncrypt matches madmin-go's
// format), also for a policy longer than STS's 2048-byte session limit.
func TestNewUser(t *testing.T) {
	srv := Server(t)
	ctx := context.Background()
	readable, other := srv.NewBucket(t, false), srv.NewBucket(t, false)
	root := srv.Client(t)
	for _, b := range []string{readable, other} {
		if _, err := root.PutObject(ctx, b, "k", strings.NewReader("v"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pad := strings.Repeat(fmt.Sprintf(`,"arn:aws:s3:::%s/padding-that-matches-nothing/*"`, readable), 40)
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"%s]}]}`, readable, pad)
	if len(policy) <= 2048 {
		t.Fatalf("policy of %d bytes: make it longer than a session policy may be", len(policy))
	}
	ak, sk := srv.NewUser(t, policy)
	c, err := newClient(srv.Endpoint(), ak, sk)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.GetObject(ctx, readable, "k", minio.GetObjectOptions{})
	if err == nil {
		_, err = o.Stat()
		o.Close()
	}
	if err != nil {
		t.Fatalf("the user cannot read what its policy allows: %v", err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("%s: %v (code %q), want AccessDenied", what, err, code)
		}
	}
	_, err = c.PutObject(ctx, readable, "k2", strings.NewReader("v"), 1, minio.PutObjectOptions{})
	denied("put", err)
	_, err = c.StatObject(ctx, other, "k", minio.StatObjectOptions{})
	denied("read another bucket", err)
}
