package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/idvault/idvault/internal/proctest"
)

// InstallHint is the command that installs the MinIO server this package
// expects; it is part of the skip message when no binary is found.
const InstallHint = "GOBIN=$PWD/bin go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

const (
	readyTimeout = 30 * time.Second
	startTries   = 3
	outputLimit  = 64 << 10
	tailLines    = 40
)

// Srv is a running MinIO server shared by the tests of one test binary. It is
// safe for concurrent use.
type Srv struct {
	endpoint  string
	accessKey string
	secretKey string

	dir  string
	bin  string         // the server binary
	args []string       // its arguments (same address and data on Restart)
	proc *proctest.Proc // nil until run
	out  *proctest.Tail
}

var (
	once     sync.Once
	shared   *Srv
	startErr error
)

// Server returns the shared server of this test binary, starting it on first
// use. When no minio binary is found it skips tb (fails it under CI=true);
// when the server does not start it fails tb with the tail of its output.
func Server(tb testing.TB) *Srv {
	tb.Helper()
	once.Do(func() { shared, startErr = start() })
	if startErr != nil {
		if errors.Is(startErr, ErrNoBinary) {
			proctest.SkipUnlessCI(tb, startErr.Error())
		}
		tb.Fatal(startErr.Error())
	}
	return shared
}

// Main runs the tests of m, then stops the shared server (if one was started)
// and removes its data directory. Call it from TestMain:
// os.Exit(miniotest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	return code
}

// Endpoint returns the server's host:port (plain HTTP on 127.0.0.1).
func (s *Srv) Endpoint() string { return s.endpoint }

// AccessKey returns the root user of the server.
func (s *Srv) AccessKey() string { return s.accessKey }

// SecretKey returns the root password of the server.
func (s *Srv) SecretKey() string { return s.secretKey }

// String describes the server without its credentials.
func (s *Srv) String() string { return "miniotest.Srv(" + s.endpoint + ")" }

// GoString is String, so that %#v does not print the credentials either.
func (s *Srv) GoString() string { return s.String() }

// Client returns a new minio client for the server with root credentials.
func (s *Srv) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	c, err := newClient(s.endpoint, s.accessKey, s.secretKey)
	if err != nil {
		tb.Fatalf("miniotest: new client: %v", err)
	}
	return c
}

// NewBucket creates a bucket with a unique random name and returns the name.
// With objectLock the bucket is created with object locking enabled (which
// also makes it versioned). Buckets are not removed one by one: the whole
// data directory goes when Main stops the server.
func (s *Srv) NewBucket(tb testing.TB, objectLock bool) string {
	tb.Helper()
	name := "idv-" + randHex(tb, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(tb).MakeBucket(ctx, name, minio.MakeBucketOptions{ObjectLocking: objectLock}); err != nil {
		tb.Fatalf("miniotest: make bucket: %v", err)
	}
	return name
}

// NewVersionedBucket creates a bucket with versioning enabled (and no object
// lock) and returns its name.
func (s *Srv) NewVersionedBucket(tb testing.TB) string {
	tb.Helper()
	name := s.NewBucket(tb, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(tb).EnableVersioning(ctx, name); err != nil {
		tb.Fatalf("miniotest: enable versioning: %v", err)
	}
	return name
}

func newClient(endpoint, access, secret string) (*minio.Client, error) {
	return minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, ""),
		Secure: false,
	})
}

func randHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("miniotest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// findBinary returns the minio binary to run ($MINIO_BIN, minio on PATH,
// bin/minio of the module root or an enclosing one), or "" if there is none.
func findBinary() string { return proctest.FindBinary("MINIO_BIN", "minio") }

func start() (*Srv, error) {
	bin := findBinary()
	if bin == "" {
		return nil, fmt.Errorf("%w ($MINIO_BIN, minio on PATH, <module root>/bin/minio); "+
			"run `make test`, or install it with: %s", ErrNoBinary, InstallHint)
	}
	var err error
	for range startTries {
		var s *Srv
		s, err = startOnce(bin)
		if err == nil {
			return s, nil
		}
		// Only a server that exited early (typically because another
		// process took the port between freePort and its bind) is retried;
		// one that hangs would only hang again.
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, err
}

// errExited: the server process exited before it became ready.
var errExited = errors.New("server exited")

func startOnce(bin string) (*Srv, error) {
	port, err := proctest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("miniotest: %w", err)
	}
	consolePort, err := proctest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("miniotest: %w", err)
	}
	dir, err := os.MkdirTemp("", "miniotest-")
	if err != nil {
		return nil, fmt.Errorf("miniotest: temp dir: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("miniotest: random: %w", err)
	}
	s := &Srv{
		endpoint:  net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
		accessKey: "idv" + hex.EncodeToString(b[:8]),
		secretKey: hex.EncodeToString(b[8:]),
		dir:       dir,
		out:       proctest.NewTail(outputLimit),
	}
	s.bin = bin
	s.args = []string{"server",
		"--address", s.endpoint,
		"--console-address", net.JoinHostPort("127.0.0.1", fmt.Sprint(consolePort)),
		"--certs-dir", filepath.Join(dir, "certs"),
		filepath.Join(dir, "data")}
	if err := s.run(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.stop()
		return nil, fmt.Errorf("miniotest: server not ready: %w\n--- server output (tail) ---\n%s", err, s.out.Lines(tailLines))
	}
	return s, nil
}

// run starts the server process with s's binary and arguments.
func (s *Srv) run() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = serverEnv(s.dir, s.accessKey, s.secretKey)
	cmd.Dir = s.dir
	p, err := proctest.Start(cmd, s.out)
	if err != nil {
		return fmt.Errorf("miniotest: start %s: %w", s.bin, err)
	}
	s.proc = p
	return nil
}

// serverEnv is the environment of the server: the parent's, minus any MINIO_*
// setting that could change its behaviour, plus ours. HOME points into the
// temp dir so the server writes nothing outside it.
func serverEnv(dir, access, secret string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MINIO_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+dir,
		"MINIO_ROOT_USER="+access,
		"MINIO_ROOT_PASSWORD="+secret,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CALLHOME_ENABLE=off",
	)
}

// waitReady polls the liveness endpoint, then a ListBuckets with the root
// credentials, until both succeed, the process exits, or the deadline passes.
func (s *Srv) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	c, err := newClient(s.endpoint, s.accessKey, s.secretKey)
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = s.probe(ctx, hc, c)
		if last == nil {
			return nil
		}
		select {
		case <-s.proc.Done():
			return fmt.Errorf("%w: %v", errExited, s.proc.ExitState())
		case <-ctx.Done():
			return fmt.Errorf("no answer within %v: %w", readyTimeout, last)
		case <-tick.C:
		}
	}
}

func (s *Srv) probe(ctx context.Context, hc *http.Client, c *minio.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.endpoint+"/minio/health/live", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.ListBuckets(lctx)
	return err
}

// stop terminates the server's process group, waits for it (SIGKILL after a
// grace period) and removes the data directory.
func (s *Srv) stop() {
	if s.proc != nil {
		s.proc.Stop(5 * time.Second)
	}
	_ = os.RemoveAll(s.dir)
}
