package s3store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
)

// isolateCredentials clears every variable the chain reads and points the
// shared files at an empty home, so only what a subtest sets is found.
func isolateCredentials(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{
		"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
		"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "MINIO_ALIAS", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	return home
}

// TestDialCredentialChain: with no static credentials in Config, Dial finds
// them in the environment (MinIO's and AWS's variables, with a session
// token), in the shared AWS credentials file, or through Config.Credentials
// (temporary credentials from MinIO's STS), and writes with them; with
// none anywhere it fails with ErrNoCredentials and sends nothing.
func TestDialCredentialChain(t *testing.T) {
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, false)
	ctx := context.Background()
	scheme := "http://"
	sts, err := credentials.NewSTSAssumeRole(scheme+srv.Endpoint(), credentials.STSAssumeRoleOptions{
		AccessKey: srv.AccessKey(), SecretKey: srv.SecretKey(), DurationSeconds: 900,
	})
	if err != nil {
		t.Fatal(err)
	}
	// MinIO's IAM subsystem comes up after its S3 API: on a loaded machine
	// STS answers "Server not initialized" for a while after the start.
	var temp credentials.Value
	for deadline := time.Now().Add(60 * time.Second); ; {
		temp, err = sts.GetWithContext(&credentials.CredContext{Endpoint: scheme + srv.Endpoint()})
		if err == nil || !strings.Contains(err.Error(), "not initialized") || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond) // waiting for a server to start, not for correctness
	}
	if err != nil {
		t.Fatalf("STS AssumeRole on MinIO: %v", err)
	}
	if temp.SessionToken == "" {
		t.Fatal("STS gave no session token")
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, home string) s3store.Config
	}{
		{"MinIO environment", func(t *testing.T, _ string) s3store.Config {
			t.Setenv("MINIO_ROOT_USER", srv.AccessKey())
			t.Setenv("MINIO_ROOT_PASSWORD", srv.SecretKey())
			return s3store.Config{}
		}},
		{"AWS environment with a session token", func(t *testing.T, _ string) s3store.Config {
			t.Setenv("AWS_ACCESS_KEY_ID", temp.AccessKeyID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", temp.SecretAccessKey)
			t.Setenv("AWS_SESSION_TOKEN", temp.SessionToken)
			return s3store.Config{}
		}},
		{"shared credentials file", func(t *testing.T, home string) s3store.Config {
			dir := filepath.Join(home, ".aws")
			os.MkdirAll(dir, 0o700)
			body := fmt.Sprintf("[idv]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey(), srv.SecretKey())
			if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_PROFILE", "idv")
			return s3store.Config{}
		}},
		{"static with a session token", func(t *testing.T, _ string) s3store.Config {
			return s3store.Config{AccessKeyID: temp.AccessKeyID, SecretAccessKey: temp.SecretAccessKey, SessionToken: temp.SessionToken}
		}},
		{"Config.Credentials (STS)", func(t *testing.T, _ string) s3store.Config {
			return s3store.Config{Credentials: sts}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.setup(t, isolateCredentials(t))
			cfg.Endpoint, cfg.Bucket, cfg.Prefix = srv.Endpoint(), bucket, "chain"
			s, err := s3store.Dial(ctx, cfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			mustPut(t, s, "k-"+strings.ReplaceAll(c.name, " ", "-")[:3], []byte("v"))
			if out := fmt.Sprintf("%v %+v", cfg, s); strings.Contains(out, temp.SessionToken) || strings.Contains(out, srv.SecretKey()) {
				t.Error("a secret shows in Config or Store formatting")
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		isolateCredentials(t)
		// The default chain's last provider asks the EC2 metadata service,
		// which a test cannot rule out; the environment-only chain stands in.
		cfg := s3store.Config{Endpoint: srv.Endpoint(), Bucket: bucket,
			Credentials: credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvMinio{}, &credentials.EnvAWS{}})}
		if _, err := s3store.Dial(ctx, cfg); !errors.Is(err, s3store.ErrNoCredentials) {
			t.Fatalf("Dial without credentials: %v, want ErrNoCredentials", err)
		}
	})
}
