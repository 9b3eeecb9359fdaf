// Command agegate is a small age-verification web app built on idvault: a
// member uploads a photo of an ID document, a reviewer looks at it through a
// single-use token and records the birth date and a decision, and the image
// is deleted at once (or at the 72-hour expiry if nobody decides). An
// auditor's security page verifies the audit log and shows who looked at
// what, per-reviewer volume, alerts and canaries.
//
//	go run ./examples/agegate
//
// It prints its URL (127.0.0.1 only by default, -addr to change) and the
// directory holding its state (-dir). The accounts are fixed DEMO accounts
// listed on the sign-in page; there are no passwords. The images are kept in
// the embedded default (a local directory) or, with -s3-endpoint,
// -s3-bucket and -s3-key-bucket, in MinIO or S3: the audit log and payloads
// in an object-lock bucket (write-once audit is then required), key records
// in an unversioned one; "idvault init" prepares both. S3 credentials come
// from MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, else from the usual chain
// (AWS variables, shared files, IAM role, web identity).
//
// GET /metrics serves the vault's metrics for Prometheus (no secrets, no
// identities; in production, serve it on an internal listener).
//
// The passphrase that protects the local key-encryption keyset is a demo
// constant unless IDVAULT_PASSPHRASE is set. In production the KEK lives in
// a KMS (see package kms).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// demoPassphrase protects the demo keyset. DEMO ONLY: anyone who reads this
// file can open it. Set IDVAULT_PASSPHRASE to use your own.
const demoPassphrase = "idvault-agegate-demo-passphrase (not for production)"

// config is what main reads from its flags and environment.
type config struct {
	Addr        string
	Dir         string
	S3Endpoint  string
	S3Bucket    string
	S3KeyBucket string
	S3Prefix    string
	S3TLS       bool
	S3User      string // from MINIO_ROOT_USER
	S3Password  string // from MINIO_ROOT_PASSWORD; never printed
	MaxUpload   int64
	CanaryRate  int
	Freeze      bool
	Passphrase  []byte

	// For tests: a cheap keyset derivation and an injected clock.
	KDF kms.LocalOptions
	Now func() time.Time
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("agegate: ")
	cfg := config{
		S3User:     os.Getenv("MINIO_ROOT_USER"),
		S3Password: os.Getenv("MINIO_ROOT_PASSWORD"),
		Passphrase: []byte(demoPassphrase),
	}
	if p := os.Getenv("IDVAULT_PASSPHRASE"); p != "" {
		cfg.Passphrase = []byte(p)
	}
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to listen on (loopback by default: this is a demo)")
	flag.StringVar(&cfg.Dir, "dir", filepath.Join(os.TempDir(), "idvault-agegate"), "directory for the keyset, the app state and (without -s3-*) the store")
	flag.StringVar(&cfg.S3Endpoint, "s3-endpoint", "", "MinIO/S3 `host:port`; credentials from MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, else the AWS chain")
	flag.StringVar(&cfg.S3Bucket, "s3-bucket", "", "`bucket` with object lock for the audit log and payloads (must exist; see idvault init)")
	flag.StringVar(&cfg.S3KeyBucket, "s3-key-bucket", "", "unversioned `bucket` for key records (must exist; see idvault init)")
	flag.StringVar(&cfg.S3Prefix, "s3-prefix", "", "key prefix inside the bucket")
	flag.BoolVar(&cfg.S3TLS, "s3-tls", false, "use https to reach the S3 endpoint")
	flag.Int64Var(&cfg.MaxUpload, "max-upload", 10<<20, "largest accepted image in bytes")
	flag.IntVar(&cfg.CanaryRate, "canary-rate", 0, "one canary per this many uploading members and listed documents (0: the vault's default, 40; negative: none)")
	flag.BoolVar(&cfg.Freeze, "freeze", true, "freeze a principal that raises an alert until an auditor unfreezes it")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run opens the vault, serves the app on cfg.Addr until ctx ends, then
// shuts down and closes the vault (writing the final audit checkpoint).
func run(ctx context.Context, cfg config, out io.Writer) error {
	env, err := setup(ctx, cfg, log.New(os.Stderr, "agegate: ", 0))
	if err != nil {
		return err
	}
	defer env.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: env.App, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "agegate: serving on http://%s/  (DEMO accounts, no passwords; Ctrl-C to stop)\n", ln.Addr())
	fmt.Fprintf(out, "agegate: state and keyset in %s; store: %s\n", cfg.Dir, env.StoreName)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// environment is everything setup opened.
type environment struct {
	App       *App
	Vault     *vault.Vault
	Store     store.Store
	KeyStore  store.Store // Store unless -s3-key-bucket
	StoreName string
}

// Close closes the vault, which writes the final signed audit checkpoint.
func (e *environment) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Vault.Close(ctx)
}

// setup opens the keyset, the store and the vault, and builds the app.
func setup(ctx context.Context, cfg config, logger *log.Logger) (*environment, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	kekPath := filepath.Join(cfg.Dir, "kek")
	kek, err := kms.OpenLocal(kekPath, cfg.Passphrase)
	if errors.Is(err, os.ErrNotExist) {
		kek, err = kms.CreateLocal(kekPath, cfg.Passphrase, cfg.KDF)
	}
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}

	var st, keys store.Store
	var name string
	s3mode := cfg.S3Endpoint != "" || cfg.S3Bucket != "" || cfg.S3KeyBucket != ""
	switch {
	case s3mode:
		if cfg.S3Endpoint == "" || cfg.S3Bucket == "" || cfg.S3KeyBucket == "" {
			return nil, errors.New("-s3-endpoint, -s3-bucket and -s3-key-bucket go together (idvault init creates the buckets)")
		}
		s3cfg := s3store.Config{Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, UseTLS: cfg.S3TLS}
		if cfg.S3User != "" && cfg.S3Password != "" {
			s3cfg.AccessKeyID, s3cfg.SecretAccessKey = cfg.S3User, cfg.S3Password
		}
		client, err := s3store.NewClient(s3cfg)
		if err != nil {
			return nil, err
		}
		// cfg.Now (tests) moves the store's clock with the vault's.
		s3, err := s3store.New(ctx, client, cfg.S3Bucket, s3store.Options{Prefix: cfg.S3Prefix, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		ks, err := s3store.New(ctx, client, cfg.S3KeyBucket, s3store.Options{Prefix: cfg.S3Prefix})
		if err != nil {
			return nil, err
		}
		st, keys, name = s3, ks, s3.String()+" keys in "+ks.String()
	default:
		// cfg.Now (tests) moves the store's clock with the vault's: the
		// vault refuses anything irreversible while the two disagree.
		fs, err := fsstore.OpenWithOptions(filepath.Join(cfg.Dir, "store"), fsstore.Options{Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		st, keys, name = fs, fs, fs.Dir()
	}
	metrics, err := newMetrics()
	if err != nil {
		return nil, err
	}

	alerts := newAlertLog(200)
	v, err := vault.Open(ctx, vault.Config{
		Store: st,
		KEK:   kek,
		Now:   cfg.Now,
		Storage: vault.StorageConfig{
			KeyStore: keys,
			MaxSize:  cfg.MaxUpload,
		},
		Retention: vault.RetentionConfig{
			SweepEvery:   10 * time.Minute, // undecided images go at the 72-hour expiry
			OnSweepError: func(err error) { logger.Printf("sweep: %v", err) },
		},
		Detection: vault.DetectionConfig{
			OnAlert: alerts.add,
			// Freezing is the vault's default; -freeze=false opts out.
			AlertOnly: !cfg.Freeze,
			// The vault plants canaries among the uploads on their own rhythm
			// (never at startup); the queue lists them (handleQueue).
			CanaryRate: cfg.CanaryRate,
		},
		Audit: vault.AuditConfig{
			// On S3 the audit log must be write-once: Open fails on a bucket
			// without object lock instead of degrading silently.
			RequireWriteOnce: s3mode,
		},
		Observability: vault.ObservabilityConfig{
			MeterProvider: metrics.provider,
			Logger:        slog.New(slog.NewTextHandler(logger.Writer(), nil)),
		},
	})
	if err != nil {
		return nil, err
	}
	app, err := New(v, st, Options{
		MaxUpload: cfg.MaxUpload,
		StatePath: filepath.Join(cfg.Dir, "agegate-state.json"),
		Alerts:    alerts,
		Logger:    logger,
		Metrics:   metrics.handler,
		Now:       cfg.Now,
	})
	if err != nil {
		v.Close(ctx)
		return nil, err
	}
	return &environment{App: app, Vault: v, Store: st, KeyStore: keys, StoreName: name}, nil
}

// String describes c with its secrets (the S3 password, the keyset
// passphrase) redacted.
func (c config) String() string {
	return fmt.Sprintf("agegate config{addr %s, dir %s, s3 %q bucket %q key bucket %q user %q password REDACTED, passphrase REDACTED, max upload %d, canary rate %d, freeze %t}",
		c.Addr, c.Dir, c.S3Endpoint, c.S3Bucket, c.S3KeyBucket, c.S3User, c.MaxUpload, c.CanaryRate, c.Freeze)
}

// GoString redacts like String.
func (c config) GoString() string { return c.String() }

// Format writes String for every verb, so no verb reaches the secrets.
func (c config) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }
