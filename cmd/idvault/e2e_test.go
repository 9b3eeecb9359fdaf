package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/internal/proctest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/s3store"
)

// TestDeploymentEndToEnd operates the deployment init creates on MinIO,
// as an operator would, with nothing but the deployment file init wrote:
//
//	init (object-locked data bucket, unversioned key bucket, a new local
//	keyset, the file) → the sample app (examples/agegate, built and run
//	as a process) takes uploads over HTTP and a reviewer views one →
//	kek counts → sweep shreds what expired → token rotate --revoke →
//	kek create + kek rewrap (the file then names the new KEK) → kek
//	counts again → audit verify (pinned key, state) → audit checkpoint
//	(the witness) → audit verify --witness,
//
// run in-process, then again through the built idvault binary. Before the
// deployment file and --key-store, sweep, token rotate and kek rewrap
// exited 2 on this layout and kek printed "0 key records".
func TestDeploymentEndToEnd(t *testing.T) {
	m := newMinioEnv(t)
	ctx := context.Background()
	srv, client := m.srv, m.client
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "idvault.conf")
	kek1, kek2 := filepath.Join(dir, "app", "kek"), filepath.Join(dir, "kek-2026")
	const pass1, pass2 = "e2e-first-passphrase-9113", "e2e-second-passphrase-2207"
	env := map[string]string{
		"MINIO_ROOT_USER": srv.AccessKey(), "MINIO_ROOT_PASSWORD": srv.SecretKey(),
		"IDVAULT_PASSPHRASE": pass1, "NEW_PASS": pass2, "IDVAULT_CONFIG": cfg,
	}
	secrets := []string{pass1, pass2, srv.SecretKey()}
	data, keys := freshBucketName(t), freshBucketName(t)
	s3url := func(bucket string) string { return m.url(bucket, nil) }
	cli := func(args ...string) result {
		t.Helper()
		r := runCLI(t, env, args...)
		for _, s := range secrets {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Fatalf("idvault %q printed a secret", args)
			}
		}
		if r.code != exitOK {
			t.Fatalf("idvault %q: %v", args, r)
		}
		return r
	}

	// 1. init.
	if err := os.MkdirAll(filepath.Dir(kek1), 0o700); err != nil {
		t.Fatal(err)
	}
	r := cli("init", s3url(data), "--key-store", s3url(keys), "--kek", "local:"+kek1, "--create-kek",
		"--as", "ops-e2e", "--state", filepath.Join(dir, "verify.state"), "--witness", filepath.Join(dir, "witness", "heads"))
	if !strings.Contains(r.stdout, "data bucket "+data+": created with object lock") || !strings.Contains(r.stdout, "key bucket "+keys+": created, unversioned") {
		t.Fatalf("init: %v", r)
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Fatalf("the deployment file holds a secret:\n%s", raw)
		}
	}
	dep, err := parseDeployment(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !sameStore(dep.values["key-store"], s3url(keys)) || dep.values["kek"] != "local:"+kek1 || dep.values["passphrase"] != "env:IDVAULT_PASSPHRASE" {
		t.Fatalf("deployment file:\n%s", raw)
	}

	// 2. The sample app takes uploads, through its own code, on the same
	// buckets and the same keyset.
	app := startAgegate(t, filepath.Dir(kek1), srv, data, keys, pass1)
	alice, bob, rita := app.login(t, "member-alice"), app.login(t, "member-bob"), app.login(t, "reviewer-rita")
	for i, u := range []*appUser{alice, alice, bob} { // alice's second upload replaces her first
		u.upload(t, append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, fmt.Sprintf("scan %d %s", i, strings.Repeat("x", 2000))...))
	}
	imgs := rita.reviewImages(t)
	if len(imgs) != 2 {
		t.Fatalf("%d documents in the review queue, want 2", len(imgs))
	}
	if got := rita.get(t, imgs[0]); !bytes.HasPrefix(got, []byte{0xFF, 0xD8}) {
		t.Fatal("the reviewer did not get the image")
	}
	app.stop(t)
	// Three documents uploaded ten hours ago with a one-hour retention:
	// what the next sweep must shred.
	expired := putExpired(t, client, data, keys, kek1, pass1, 3)

	keyRecords := func() map[string]bool {
		m := map[string]bool{}
		for o := range client.ListObjects(ctx, keys, minio.ListObjectsOptions{Prefix: "keys/", Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			m[strings.TrimPrefix(o.Key, "keys/")] = true
		}
		return m
	}
	before := keyRecords()
	if len(before) < 2+3 {
		t.Fatalf("%d key records in the key bucket, want at least 5", len(before))
	}
	k1, err := kms.OpenLocal(kek1, []byte(pass1))
	if err != nil {
		t.Fatal(err)
	}

	// The old way fails clearly: without the key store, nothing counts 0.
	old := runCLI(t, m.env, "kek", "--store", s3url(data))
	if old.code != exitUsage || !strings.Contains(old.stderr, "keeps object versions") || strings.Contains(old.stdout, "key records") {
		t.Fatalf("kek without the key store: %v", old)
	}

	// 3. kek counts where the records are.
	r = cli("kek")
	if !strings.Contains(r.stdout, fmt.Sprintf("%8d key records wrapped by %s\n", len(before), k1.ID())) || !strings.Contains(r.stdout, "keyset wrapped by "+k1.ID()) {
		t.Fatalf("kek: %v (want %d records)", r, len(before))
	}
	// 4. sweep shreds the expired documents: their key records go.
	r = cli("sweep")
	if !strings.Contains(r.stdout, "3 expired and shredded") {
		t.Fatalf("sweep: %v", r)
	}
	after := keyRecords()
	for _, id := range expired {
		if after[id] {
			t.Fatalf("swept document %s still has its key record", id)
		}
	}
	if len(after) != len(before)-3 {
		t.Fatalf("%d key records after the sweep, want %d", len(after), len(before)-3)
	}
	// 5. token rotate --revoke.
	cli("token", "rotate", "--revoke", "--reason", "e2e leak drill")
	// 6. kek create + kek rewrap: the file then names the new KEK.
	cli("kek", "create", "local:"+kek2, "--passphrase", "env:NEW_PASS")
	k2, err := kms.OpenLocal(kek2, []byte(pass2))
	if err != nil {
		t.Fatal(err)
	}
	r = cli("kek", "rewrap", "--to", "local:"+kek2, "--to-passphrase", "env:NEW_PASS")
	if !strings.Contains(r.stdout, fmt.Sprintf("%d key records rewrapped", len(after))) || !strings.Contains(r.stdout, " 0 remaining") ||
		!strings.Contains(r.stdout, "kek now local:"+kek2) {
		t.Fatalf("rewrap: %v", r)
	}
	if dep, err := readDeployment(cfg); err != nil || dep.values["kek"] != "local:"+kek2 || dep.values["passphrase"] != "env:NEW_PASS" {
		t.Fatalf("the deployment file after the rewrap: %+v, %v", dep, err)
	}
	// 7. kek counts again: everything under the new KEK.
	r = cli("kek")
	if !strings.Contains(r.stdout, fmt.Sprintf("%8d key records wrapped by %s\n", len(after), k2.ID())) || strings.Contains(r.stdout, k1.ID()) {
		t.Fatalf("kek after the rewrap: %v", r)
	}
	// 8. The audit log: verify with the pinned key and the state file,
	// hand the heads to the witness, verify against it.
	r = cli("audit", "verify", "--require-sealed")
	if !strings.HasSuffix(r.stdout, "\nOK\n") || strings.Contains(r.stderr, "read from the store itself") {
		t.Fatalf("verify: %v", r)
	}
	r = cli("audit", "checkpoint")
	if r.stdout != "" || !strings.Contains(r.stderr, "signed checkpoints") {
		t.Fatalf("checkpoint (to the witness file): %v", r)
	}
	cli("audit", "verify", "--witness", filepath.Join(dir, "witness", "heads"))
	if _, err := os.Stat(filepath.Join(dir, "verify.state")); err != nil {
		t.Fatalf("no state file: %v", err)
	}
	// Who did what is in the log: ops-e2e from the file swept, rotated
	// and rewrapped.
	r = cli("audit", "query", "--principal", "ops-e2e", "--event", "rotate")
	if n := strings.Count(r.stdout, "\n"); n < 3 { // the token rotation, the rewrap's start and end
		t.Fatalf("%d rotate records by ops-e2e: %v", n, r)
	}

	// 9. The built binary, reading the same file.
	bin := buildCommand(t, ".", "idvault")
	for _, args := range [][]string{{"version"}, {"kek"}, {"sweep"}, {"audit", "verify"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "IDVAULT_CONFIG=" + cfg, "NEW_PASS=" + pass2,
			"MINIO_ROOT_USER=" + srv.AccessKey(), "MINIO_ROOT_PASSWORD=" + srv.SecretKey()}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s", bin, args, err, out)
		}
		for _, s := range secrets {
			if strings.Contains(string(out), s) {
				t.Fatalf("%q printed a secret", args)
			}
		}
		if args[0] == "version" && !strings.HasPrefix(string(out), "idvault v") {
			t.Fatalf("version: %s", out)
		}
		if args[0] == "kek" && !strings.Contains(string(out), fmt.Sprintf("%8d key records wrapped by %s\n", len(after), k2.ID())) {
			t.Fatalf("kek from the binary: %s", out)
		}
	}
}

// putExpired puts n documents into the deployment through the library,
// with the clock ten hours back and a one-hour retention, and returns
// their IDs.
func putExpired(t *testing.T, client *minio.Client, data, keys, kekPath, pass string, n int) []string {
	t.Helper()
	ctx := context.Background()
	kek, err := kms.OpenLocal(kekPath, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	// Ten hours ago, on the store's clock too (the vault refuses to set a
	// deadline while its clock and the store's disagree).
	past := func() time.Time { return time.Now().Add(-10 * time.Hour) }
	ds, err := s3store.New(ctx, client, data, s3store.Options{Now: past})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := s3store.New(ctx, client, keys, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVault(t, vault.Config{Store: ds, KEK: kek, Now: past, Storage: vault.StorageConfig{KeyStore: ks}, Audit: vault.AuditConfig{RequireWriteOnce: true}})
	ids := putDocs(t, v, testImage(1500), n, "old-member", time.Hour)
	if err := v.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// buildCommand builds the command in pkgDir (relative to the workspace
// root, or "." for this one) into a temporary directory, with -race when
// the tests run with it (so the build shares their cache).
func buildCommand(t *testing.T, pkgDir, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		proctest.SkipUnlessCI(t, "no go command on PATH")
	}
	out := filepath.Join(t.TempDir(), name)
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	cmd.Dir = pkgDir
	if pkgDir != "." {
		cmd.Dir = filepath.Join(workspaceRoot(t), pkgDir)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkgDir, err, b)
	}
	return out
}

// workspaceRoot is the directory above the working directory that holds
// go.work.
func workspaceRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		up := filepath.Dir(d)
		if up == d {
			t.Fatal("no go.work above the working directory")
		}
		d = up
	}
}

// agegate is the sample app running as a process.
type agegate struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

// startAgegate builds and starts examples/agegate on the two buckets with
// the keyset in dir/kek.
func startAgegate(t *testing.T, dir string, srv *miniotest.Srv, data, keys, pass string) *agegate {
	t.Helper()
	bin := buildCommand(t, "examples/agegate", "agegate")
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-dir", dir, "-s3-endpoint", srv.Endpoint(),
		"-s3-bucket", data, "-s3-key-bucket", keys, "-canary-rate", "-1")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "MINIO_ROOT_USER=" + srv.AccessKey(),
		"MINIO_ROOT_PASSWORD=" + srv.SecretKey(), "IDVAULT_PASSPHRASE=" + pass}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agegate{cmd: cmd, done: make(chan error, 1)}
	serving := regexp.MustCompile(`serving on (http://127\.0\.0\.1:\d+)/`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := serving.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		io.Copy(io.Discard, stdout)
		a.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-a.done
		}
	})
	select {
	case a.base = <-found:
	case err := <-a.done:
		t.Fatalf("agegate exited: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("agegate did not start\n%s", stderr.String())
	}
	return a
}

// stop ends the app as Ctrl-C would: it closes its vault, sealing its
// audit log.
func (a *agegate) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("agegate: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("agegate did not stop")
	}
}

// appUser is a signed-in demo account.
type appUser struct {
	c    *http.Client
	base string
}

func (a *agegate) login(t *testing.T, account string) *appUser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u := &appUser{c: &http.Client{Jar: jar, Timeout: time.Minute}, base: a.base}
	resp, err := u.c.PostForm(a.base+"/login", url.Values{"account": {account}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %s", account, resp.Status)
	}
	return u
}

// upload sends img through the member page's form.
func (u *appUser) upload(t *testing.T, img []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("kind", "drivers-license")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="document"; filename="licence.jpg"`)
	h.Set("Content-Type", "image/jpeg")
	w, _ := mw.CreatePart(h)
	w.Write(img)
	mw.Close()
	resp, err := u.c.Post(u.base+"/upload", mw.FormDataContentType(), &b)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Query().Get("uploaded") != "1" {
		t.Fatalf("upload: %s at %s\n%s", resp.Status, resp.Request.URL, body)
	}
}

// reviewImages returns the image URLs of the review queue.
func (u *appUser) reviewImages(t *testing.T) []string {
	t.Helper()
	var urls []string
	for _, m := range regexp.MustCompile(`src="(/img/idv1_[A-Za-z0-9_-]+)"`).FindAllSubmatch(u.get(t, "/review"), -1) {
		urls = append(urls, string(m[1]))
	}
	return urls
}

func (u *appUser) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := u.c.Get(u.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
	}
	return b
}
