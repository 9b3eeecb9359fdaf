// Package localkms runs local-kms (github.com/nsmithuk/local-kms), a
// stand-in for AWS KMS that speaks its protocol, for tests and benchmarks:
// one process per Server, its data in a temporary directory, listening on
// 127.0.0.1 only.
//
// The binary is looked up in $LOCAL_KMS_BIN (an executable file), then as
// "local-kms" on PATH, then as bin/local-kms in the module root or a
// directory above it (where `make test` installs it). Start skips the test when none is found,
// except under CI=true where that is a failure.
//
// The upstream command has no option to choose its listen address (it
// listens on every interface), so the binary `make test` installs is
// tools/localkms: the same server, built from local-kms's packages at the
// pinned version, on a loopback listener.
package localkms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssdk "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/idvault/idvault/internal/proctest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms"
)

// InstallHint is how the binary is installed.
const InstallHint = "(cd tools/localkms && GOWORK=off go build -o ../../bin/local-kms .), which make test does"

// outputLimit and tailLines bound the server output kept for errors.
const (
	outputLimit = 64 << 10
	tailLines   = 40
)

// Region and Account are what the server is configured with.
const (
	Region  = "eu-west-1"
	Account = "111122223333"
)

// ErrNoBinary: no local-kms binary was found.
var ErrNoBinary = errors.New("localkms: no local-kms binary ($LOCAL_KMS_BIN, PATH, bin/local-kms); install: " + InstallHint)

// Server is one running local-kms.
type Server struct {
	// Endpoint is "http://127.0.0.1:PORT".
	Endpoint string
	// KMS is an SDK client for the server (fixed dummy credentials:
	// local-kms checks none).
	KMS *awssdk.Client

	dir  string
	bin  string
	env  []string
	port int
	proc *proctest.Proc
	out  *proctest.Tail
	once sync.Once
}

// Binary returns the path of the local-kms binary ($LOCAL_KMS_BIN if it
// is an executable file, local-kms on PATH, bin/local-kms of the module
// root or a directory above it).
func Binary() (string, error) {
	if p := proctest.FindBinary("LOCAL_KMS_BIN", "local-kms"); p != "" {
		return p, nil
	}
	return "", ErrNoBinary
}

// Start starts a server for tb and stops it when tb ends. It skips tb
// when no binary is found (fails under CI=true).
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartServer()
	if err != nil {
		if errors.Is(err, ErrNoBinary) {
			proctest.SkipUnlessCI(tb, err.Error())
		}
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartServer starts a server; the caller calls Stop.
func StartServer() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 {
		s, err := try(bin)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func try(bin string) (*Server, error) {
	port, err := proctest.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "localkms-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, port: port, out: proctest.NewTail(outputLimit)}
	s.env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"KMS_DATA_PATH="+filepath.Join(dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"),
		"KMS_ACCOUNT_ID="+Account,
		"KMS_REGION="+Region,
	)
	if err := s.run(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	s.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.KMS = Client(s.Endpoint)
	return s, nil
}

// run starts the server process.
func (s *Server) run() error {
	cmd := exec.Command(s.bin)
	cmd.Env = s.env
	p, err := proctest.Start(cmd, s.out)
	if err != nil {
		return fmt.Errorf("localkms: start: %w", err)
	}
	s.proc = p
	return nil
}

// waitReady waits until the server accepts connections.
func (s *Server) waitReady() error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.proc.Done():
			return fmt.Errorf("localkms: exited at start: %s", s.out.Lines(tailLines))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("localkms: not ready after 20 s")
		}
	}
}

// Pause sends SIGSTOP to the server: it keeps its connections and answers
// nothing, as a hung KMS would, until Resume. It returns once every thread
// of the server is stopped (on Linux). Fault-injection tests only.
func (s *Server) Pause() error { return notRunning(s.proc.Pause()) }

// Resume sends SIGCONT to a server paused with Pause.
func (s *Server) Resume() error { return notRunning(s.proc.Resume()) }

// notRunning says which server is not running.
func notRunning(err error) error {
	if errors.Is(err, proctest.ErrNotRunning) {
		return errors.New("localkms: server not running")
	}
	return err
}

// Kill sends SIGKILL to the server and waits for it to exit, as a crash of
// the KMS would: calls in flight fail, later ones are refused. Its keys
// stay (on disk) for Restart. Fault-injection tests only.
func (s *Server) Kill() error { return notRunning(s.proc.Kill()) }

// Restart starts a server stopped by Kill again, on the same port with the
// same keys, and waits until it accepts connections.
func (s *Server) Restart() error {
	select {
	case <-s.proc.Done():
	default:
		return errors.New("localkms: server still running (Kill it first)")
	}
	if err := s.run(); err != nil {
		return err
	}
	return s.waitReady()
}

// Client returns an SDK client for a local-kms-like endpoint, with fixed
// dummy credentials and no retries.
func Client(endpoint string) *awssdk.Client {
	return awssdk.New(awssdk.Options{
		Region:           Region,
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("local", "local", ""),
		RetryMaxAttempts: 1,
	})
}

// Stop kills the server's process group and removes its data.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.proc.Stop(0)
		os.RemoveAll(s.dir)
	})
}

// CreateKey creates a symmetric key and returns its aws-kms:// URI.
func (s *Server) CreateKey(ctx context.Context) (string, error) {
	out, err := s.KMS.CreateKey(ctx, &awssdk.CreateKeyInput{})
	if err != nil {
		return "", err
	}
	return awskms.Prefix + *out.KeyMetadata.Arn, nil
}

// SetEnabled enables or disables the key of uri.
func (s *Server) SetEnabled(ctx context.Context, uri string, on bool) error {
	id := aws.String(uri[len(awskms.Prefix):])
	var err error
	if on {
		_, err = s.KMS.EnableKey(ctx, &awssdk.EnableKeyInput{KeyId: id})
	} else {
		_, err = s.KMS.DisableKey(ctx, &awssdk.DisableKeyInput{KeyId: id})
	}
	return err
}

// NewKEK creates a symmetric key and opens it as a kms.KEK through
// Opener, failing tb on any error. It returns the KEK and the key's
// aws-kms:// URI (the KEK's ID).
func (s *Server) NewKEK(tb testing.TB) (kms.KEK, string) {
	tb.Helper()
	ctx := context.Background()
	uri, err := s.CreateKey(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	kek, err := kms.Open(ctx, uri, kms.OpenOptions{Openers: []kms.Opener{s.Opener()}})
	if err != nil {
		tb.Fatal(err)
	}
	return kek, uri
}

// Opener returns a kms.Opener for this server's keys.
func (s *Server) Opener() kms.Opener { return awskms.NewOpener(awskms.Options{KMS: s.KMS}) }
