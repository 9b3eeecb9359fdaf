package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault"
)

// twoBuckets configures the recommended S3 deployment on the test MinIO:
// an object-lock bucket for the audit log and payloads, an unversioned one
// for key records (what idvault init creates).
func twoBuckets(t testing.TB) func(*config) {
	srv := miniotest.Server(t)
	data, keys := srv.NewBucket(t, true), srv.NewBucket(t, false)
	return func(c *config) {
		c.S3Endpoint, c.S3Bucket, c.S3KeyBucket, c.S3Prefix = srv.Endpoint(), data, keys, "agegate"
		c.S3User, c.S3Password = srv.AccessKey(), srv.SecretKey()
	}
}

// TestS3Store: the whole flow with the store on a real MinIO server, as
// -s3-endpoint, -s3-bucket and -s3-key-bucket configure it.
func TestS3Store(t *testing.T) {
	two := twoBuckets(t)
	var c config
	two(&c)
	bucket := c.S3Bucket
	te := newTestEnv(t, envOptions{cfg: two})
	if !strings.Contains(te.env.StoreName, bucket) {
		t.Errorf("store %q is not on the bucket", te.env.StoreName)
	}
	img := licencePNG(t, 20)
	rita, link, id := te.queueOne("member-alice", img)
	if r := rita.get(link); r.status != http.StatusOK || r.body != string(img) {
		t.Fatalf("image: status %d", r.status)
	}
	if r := rita.get(link); r.status != http.StatusNotFound {
		t.Fatalf("replay: status %d", r.status)
	}
	rita.approve(id, "1970-01-01")
	if n := te.countObjects(); n != 0 { // nothing planted at startup
		t.Errorf("%d documents on S3, want 0", n)
	}
	if !strings.Contains(te.login("auditor-ada").get("/security").body, "Verified:") {
		t.Errorf("audit log on S3 not verified")
	}
	// Nothing under the app's directory but the keyset and the state.
	entries, _ := os.ReadDir(te.dir)
	for _, e := range entries {
		if e.Name() != "kek" && e.Name() != "agegate-state.json" {
			t.Errorf("unexpected %s in the app directory", e.Name())
		}
	}
}

func TestSetupErrors(t *testing.T) {
	base := config{Passphrase: []byte("p"), KDF: cheapKDF, MaxUpload: 1 << 20}
	tests := []struct {
		name string
		edit func(*config)
	}{
		{"endpoint without bucket", func(c *config) { c.S3Endpoint = "127.0.0.1:1" }},
		{"bucket without endpoint", func(c *config) { c.S3Bucket = "b" }},
		{"no key bucket", func(c *config) { c.S3Endpoint, c.S3Bucket = "127.0.0.1:1", "b" }},
		{"key bucket alone", func(c *config) { c.S3KeyBucket = "k" }},
		{"wrong passphrase", func(c *config) { c.Passphrase = []byte("other") }},
	}
	dir := t.TempDir()
	c := base
	c.Dir = dir
	env, err := setup(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Close()
	// S3 mode requires write-once audit: a data bucket without object lock
	// is refused at start, not used with a silently weaker audit log.
	t.Run("data bucket without object lock", func(t *testing.T) {
		two := twoBuckets(t)
		srv := miniotest.Server(t)
		c := base
		c.Dir = dir
		two(&c)
		c.S3Bucket = srv.NewBucket(t, false)
		if env, err := setup(context.Background(), c, nil); !errors.Is(err, vault.ErrInvalidArgument) {
			if env != nil {
				env.Close()
			}
			t.Fatalf("setup = %v, want vault.ErrInvalidArgument", err)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Dir = dir
			tc.edit(&c)
			if env, err := setup(context.Background(), c, nil); err == nil {
				env.Close()
				t.Fatal("setup succeeded")
			}
		})
	}
}

// TestRunPrintsURL: run serves on the address it prints and stops when its
// context ends.
func TestRunPrintsURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw, _ := os.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{Addr: "127.0.0.1:0", Dir: t.TempDir(), Passphrase: []byte("p"), KDF: cheapKDF, MaxUpload: 1 << 20}, pw)
	}()
	buf := make([]byte, 256)
	n, err := pr.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line := string(buf[:n])
	i := strings.Index(line, "http://127.0.0.1:")
	if i < 0 {
		t.Fatalf("printed %q", line)
	}
	u := strings.Fields(line[i:])[0]
	resp, err := http.Get(u + "login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %slogin: %d", u, resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	pw.Close()
}

// TestConfigRedacts: no fmt verb prints the S3 password or the passphrase.
func TestConfigRedacts(t *testing.T) {
	c := config{S3Endpoint: "minio:9000", S3Bucket: "b", S3User: "admin", S3Password: "s3-secret-password", Passphrase: []byte("the-passphrase")}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		out := fmt.Sprintf(verb, c) + fmt.Sprintf(verb, &c)
		if strings.Contains(out, "s3-secret-password") || strings.Contains(out, "the-passphrase") || strings.Contains(out, fmt.Sprintf("%x", "the-passphrase")) {
			t.Errorf("%s leaks a secret (output withheld)", verb)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s: %s", verb, out)
		}
	}
}

// TestStatePersists: the state file survives a restart and holds only what
// it should.
func TestStatePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.submit(submission{ID: "a1", Member: "member-alice", Kind: "passport", Submitted: now, Expires: now.Add(72 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	replaced, err := s.submit(submission{ID: "a2", Member: "member-alice", Kind: "passport", Submitted: now, Expires: now.Add(72 * time.Hour)})
	if err != nil || replaced == nil || replaced.ID != "a1" {
		t.Fatalf("second submit: %v, %v", replaced, err)
	}
	s.submit(submission{ID: "b1", Member: "member-bob", Submitted: now, Expires: now.Add(time.Hour)})
	if _, err := s.decide("a2", decision{Outcome: outcomeApproved, BirthDate: "1990-01-01", Reviewer: "reviewer-rita", Decided: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.decide("a2", decision{Outcome: outcomeRejected}); err != errNotPending {
		t.Errorf("second decision: %v", err)
	}
	s.addCanaries(now, []canary{{ID: "c1", Expires: now.Add(time.Hour)}})

	s2, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.status("member-alice", now); st.State != outcomeApproved {
		t.Errorf("alice: %+v", st)
	}
	if st := s2.status("member-bob", now); st.State != "pending" {
		t.Errorf("bob: %+v", st)
	}
	if st := s2.status("member-bob", now.Add(2*time.Hour)); st.State != "expired" {
		t.Errorf("bob later: %+v", st)
	}
	if c := s2.liveCanaries(now); len(c) != 1 || c[0].ID != "c1" {
		t.Errorf("canaries: %v", c)
	}
	b, _ := os.ReadFile(path)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 3 {
		t.Errorf("state file keys: %v (%v)", raw, err)
	}
	if bytes.Contains(b, []byte("a1")) {
		t.Errorf("the replaced submission is still in the file")
	}
	if _, err := loadState(filepath.Join(t.TempDir(), "missing.json")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := loadState(bad); err == nil {
		t.Errorf("corrupt file loaded")
	}
}
