package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/redislimiter"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// server is how to reach the MinIO server. Its Format redacts the secret.
type server struct {
	Endpoint  string `json:"endpoint"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

func serverOf(s *miniotest.Srv) server {
	return server{Endpoint: s.Endpoint(), AccessKey: s.AccessKey(), SecretKey: s.SecretKey()}
}

// Format prints the endpoint only, for every verb.
func (s server) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "server(%s)", s.Endpoint) }

func (s server) client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
}

const (
	vaultPrefix = "vault/"
	// redisPrefix holds the second vault, whose Limiter is redislimiter.
	redisPrefix = "vault-redis/"
	plainPrefix = "plain/"
	agePrefix   = "age/"
	// maxSize is the vault's Config.Storage.MaxSize in every process of the
	// harness: raised to 128 MiB for the memory section's 100 MiB object.
	maxSize = 128 << 20
	// Labels the vault stores; none is a secret or a real identifier.
	benchSubject   = "bench-subject"
	benchPrincipal = "bench-reviewer"
	benchPurpose   = "bench"
)

// env is what every section shares: one bucket, one KEK, one vault.
type env struct {
	opts   options
	srv    server
	res    *Results
	client *minio.Client
	bucket string
	http   *http.Client // for presigned URLs: minio-go's own transport settings

	tmp     string // KEK file, fsstore directories
	kekPath string
	pass    []byte // the KEK file's passphrase: random, for this run only
	kek     *kms.Local
	vault   *vault.Vault
	trace   *tracingStore // nil unless -tracestore

	// rvault is a second vault (under redisPrefix) whose Limiter is
	// redislimiter on a redis-server the harness started; nil when
	// redis-server is absent (outside CI) or the redeem section is not run.
	rvault    *vault.Vault
	rtrace    *tracingStore
	stopRedis func()
}

func newEnv(ctx context.Context, opts options, srv server, res *Results) (_ *env, err error) {
	e := &env{opts: opts, srv: srv, res: res}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "idvbench-"); err != nil {
		return nil, err
	}
	if e.client, err = srv.client(); err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, err
	}
	e.http = &http.Client{Transport: tr}
	e.bucket = "idvbench-" + randHex(8)
	// No object lock: the vault refuses a versioned key store, and both
	// sides of every comparison write to this one bucket.
	if err := e.client.MakeBucket(ctx, e.bucket, minio.MakeBucketOptions{}); err != nil {
		return nil, fmt.Errorf("make bucket: %w", err)
	}
	res.Meta.Notes = append(res.Meta.Notes,
		"one MinIO bucket without object lock for both sides; the vault's audit log runs without retention (AuditRetention -1)",
		"the vault's quotas are raised out of reach (one benchmark principal); they are still checked on every Grant and Redeem")

	e.pass = []byte(randHex(32))
	e.kekPath = filepath.Join(e.tmp, "kek")
	// Minimal argon2id cost: the KDF runs once per process and must not
	// show up in the memory section's peak RSS. Not a production setting.
	if e.kek, err = kms.CreateLocal(e.kekPath, e.pass, kms.LocalOptions{Time: 1, MemoryKiB: 8, Threads: 1}); err != nil {
		return nil, err
	}
	st, err := s3store.New(ctx, e.client, e.bucket, s3store.Options{Prefix: vaultPrefix})
	if err != nil {
		return nil, err
	}
	var vst store.Store = st
	if opts.trace {
		e.trace = newTracingStore(st)
		vst = e.trace
	}
	if e.vault, err = openVault(ctx, vst, e.kek, nil); err != nil {
		return nil, err
	}
	if slices.Contains(opts.only, "redeem") {
		if err := e.openRedisVault(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// openRedisVault starts redis-server and opens the second vault, whose
// quotas are counted in Redis. Without redis-server it says so and leaves
// rvault nil, except under CI=true, where that is an error.
func (e *env) openRedisVault(ctx context.Context) error {
	rdb, stop, err := startRedis(ctx)
	if errors.Is(err, errNoRedis) && os.Getenv("CI") != "true" {
		fmt.Fprintln(os.Stderr, "bench: skipping the redislimiter contenders:", err)
		e.res.Meta.Notes = append(e.res.Meta.Notes, "redislimiter contenders skipped: "+err.Error())
		return nil
	}
	if err != nil {
		return fmt.Errorf("redislimiter: %w", err)
	}
	e.stopRedis = stop
	st, err := s3store.New(ctx, e.client, e.bucket, s3store.Options{Prefix: redisPrefix})
	if err != nil {
		return err
	}
	var vst store.Store = st
	if e.opts.trace {
		e.rtrace = newTracingStore(st)
		e.rtrace.label = "redislimiter "
		vst = e.rtrace
	}
	e.rvault, err = openVault(ctx, vst, e.kek, redislimiter.New(rdb, "idvbench:", redislimiter.Options{}))
	if err != nil {
		return err
	}
	e.res.Meta.Notes = append(e.res.Meta.Notes,
		"the redislimiter contenders use a second vault (prefix "+redisPrefix+") on the same MinIO, counting quotas in a redis-server on loopback")
	return nil
}

// openVault opens the harness's vault on st (s3store under vaultPrefix):
// MaxSize 128 MiB, no audit retention (the bucket has no object lock),
// quotas out of reach; lim nil is the default (store) limiter.
func openVault(ctx context.Context, st store.Store, kek *kms.Local, lim vault.Limiter) (*vault.Vault, error) {
	return vault.Open(ctx, vault.Config{
		Store: st,
		KEK:   kek,
		Storage: vault.StorageConfig{
			MaxSize: maxSize,
		},
		Detection: vault.DetectionConfig{
			Limiter: lim,
			// One benchmark principal redeems thousands of tokens: raise its
			// quotas out of the way (they are still checked on every call).
			Quota: vault.Quota{Documents: 1 << 30, Redemptions: 1 << 30, Burst: 1 << 30},
		},
		Audit: vault.AuditConfig{
			Retention: -1,
		},
	})
}

// setPhase names the case whose store calls -tracestore records now.
func (e *env) setPhase(phase string) {
	if e.trace != nil {
		e.trace.setPhase(phase)
	}
	if e.rtrace != nil && (phase == "" || strings.HasPrefix(phase, "redeem ")) {
		// The second vault serves only the redeem section (elsewhere
		// its store calls are its background traffic, not a case's).
		e.rtrace.setPhase(phase)
	}
}

func (e *env) close() {
	if e.vault != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = e.vault.Close(ctx)
		cancel()
	}
	if e.rvault != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = e.rvault.Close(ctx)
		cancel()
	}
	if e.stopRedis != nil {
		e.stopRedis()
	}
	if e.tmp != "" {
		_ = os.RemoveAll(e.tmp)
	}
}

// iters picks the full or the quick iteration count.
func (e *env) iters(full, quick int) int {
	if e.opts.quick {
		return quick
	}
	return full
}

func (e *env) warmup() int { return e.iters(2, 0) }

func (e *env) add(m ...Measurement) { e.res.Measurements = append(e.res.Measurements, m...) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// jpegMagic makes the generated bodies pass the vault's content sniffing.
var jpegMagic = []byte{0xFF, 0xD8, 0xFF, 0xE0}

// imageBytes returns n bytes that sniff as JPEG, the rest pseudo-random
// (incompressible, like a real photo).
func imageBytes(n int64, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(newImageReader(n, seed), b)
	return b
}

// newImageReader generates n bytes that sniff as JPEG without holding them:
// the memory section's body.
func newImageReader(n int64, seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	rng := mrand.NewChaCha8(s)
	m := min(int64(len(jpegMagic)), n)
	return io.MultiReader(bytes.NewReader(jpegMagic[:m]), io.LimitReader(rng, n-m))
}

// discard is io.Discard without ReadFrom, so that io.CopyBuffer uses the
// caller's buffer and every contender reads its body the same way.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// drain reads r to the end through a pooled 32 KiB buffer and returns the
// byte count.
func drain(r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(discard{}, r, *bp)
}
