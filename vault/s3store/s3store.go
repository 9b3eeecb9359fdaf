package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/idvault/idvault/vault/store"
)

// ErrNoBucket: the bucket given to New or Dial does not exist.
var ErrNoBucket = errors.New("s3store: bucket does not exist")

// ErrNoCredentials: Dial found no credentials, neither in Config nor
// anywhere in the chain of ChainCredentials.
var ErrNoCredentials = errors.New("s3store: no S3 credentials found")

// Options are the optional settings of New. The zero value stores keys at
// the root of the bucket.
type Options struct {
	// Prefix, when not empty, is prepended to every key so that several
	// stores can share one bucket. It must be a valid store key, optionally
	// ending in '/'; a missing trailing '/' is added, so stores with
	// prefixes "a" and "ab" never see each other's objects.
	Prefix string

	// Now, if set, is what Time reports instead of the server's time:
	// for tests that move a vault's clock and the storage's together.
	Now func() time.Time
}

// Store is a store.Store on one S3 bucket. It is safe for concurrent use.
type Store struct {
	client *minio.Client
	core   minio.Core
	bucket string
	prefix string // "" or ends in '/'
	locked bool   // the bucket has object lock enabled (read once by New)

	clock    s3Clock          // the server's time, from the Date of its answers
	fixedNow func() time.Time // Options.Now
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.ExpiryTagger = (*Store)(nil)
)

// New returns a Store on an existing bucket. It fails with an error wrapping
// ErrNoBucket if the bucket does not exist, and reads the bucket's
// object-lock configuration once (see the package documentation for what
// depends on it).
func New(ctx context.Context, client *minio.Client, bucket string, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("s3store: nil client")
	}
	prefix, err := normPrefix(opts.Prefix)
	if err != nil {
		return nil, err
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("s3store: checking bucket: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoBucket, bucket)
	}
	locked, err := objectLockEnabled(ctx, client, bucket)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, core: minio.Core{Client: client}, bucket: bucket, prefix: prefix, locked: locked, fixedNow: opts.Now}, nil
}

func normPrefix(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if err := store.ValidKey(strings.TrimSuffix(p, "/")); err != nil {
		return "", fmt.Errorf("s3store: Options.Prefix: %w", err)
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	if len(p) > 512 {
		return "", fmt.Errorf("s3store: Options.Prefix: %w", store.ErrInvalidKey)
	}
	return p, nil
}

func objectLockEnabled(ctx context.Context, client *minio.Client, bucket string) (bool, error) {
	status, _, _, _, err := client.GetObjectLockConfig(ctx, bucket)
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "ObjectLockConfigurationNotFoundError", "NotImplemented":
			// No object lock (or a service without it): retention is
			// refused with store.ErrRetentionUnsupported.
			return false, nil
		}
		return false, fmt.Errorf("s3store: reading object-lock configuration: %w", err)
	}
	return status == "Enabled", nil
}

// Config is what Dial needs to reach a bucket. Formatting a Config with fmt
// (any verb) or String never shows SecretAccessKey or SessionToken.
//
// Credentials, in order: Config.Credentials if set; else the static
// AccessKeyID, SecretAccessKey and SessionToken if AccessKeyID is set; else
// ChainCredentials (environment, shared files, IAM role or web identity).
type Config struct {
	Endpoint        string // host[:port], without scheme
	AccessKeyID     string // static credentials (optional; see above)
	SecretAccessKey string
	SessionToken    string // with temporary static credentials (optional)
	// Credentials, if set, supplies (and refreshes) the credentials, e.g.
	// credentials.NewSTSAssumeRole or your own chain.
	Credentials *credentials.Credentials
	Bucket      string
	UseTLS      bool   // https; leave false only for a server on loopback or a private network
	Region      string // "" lets the client discover it
	Prefix      string // see Options.Prefix
}

// String describes c with the secret key and session token redacted.
func (c Config) String() string {
	redact := func(s string) string {
		if s == "" {
			return `""`
		}
		return "REDACTED"
	}
	return fmt.Sprintf("s3store.Config{Endpoint:%q AccessKeyID:%q SecretAccessKey:%s SessionToken:%s Credentials:%t Bucket:%q UseTLS:%t Region:%q Prefix:%q}",
		c.Endpoint, c.AccessKeyID, redact(c.SecretAccessKey), redact(c.SessionToken), c.Credentials != nil, c.Bucket, c.UseTLS, c.Region, c.Prefix)
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Format writes String for every verb, so that no verb or flag (%v, %+v,
// %#v, %s, %q, %x) reaches the secret field.
func (c Config) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// ChainCredentials returns the usual credential chain, first match wins:
// the environment (MINIO_ROOT_USER/MINIO_ROOT_PASSWORD, MINIO_ACCESS_KEY/
// MINIO_SECRET_KEY; AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY with
// AWS_SESSION_TOKEN), the shared files (~/.aws/credentials with
// AWS_PROFILE, ~/.mc/config.json), then the IAM provider: a web identity
// (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, as on EKS), the ECS
// container endpoint, or the EC2 instance role. Temporary credentials are
// refreshed before they expire.
func ChainCredentials() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvMinio{},
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.FileMinioClient{},
		&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport, Timeout: 5 * time.Second}},
	})
}

// Dial connects to cfg.Endpoint and returns a Store on cfg.Bucket (see
// New). Credentials come from cfg (see Config) or ChainCredentials; when
// none are found it fails with ErrNoCredentials before any request.
func Dial(ctx context.Context, cfg Config) (*Store, error) {
	client, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return New(ctx, client, cfg.Bucket, Options{Prefix: cfg.Prefix})
}

// NewClient returns the minio-go client Dial uses for cfg (cfg.Bucket and
// cfg.Prefix are ignored), for what a Store does not do, such as creating
// buckets. It fails with ErrNoCredentials when no credentials are found.
func NewClient(cfg Config) (*minio.Client, error) {
	creds := cfg.Credentials
	switch {
	case creds != nil:
	case cfg.AccessKeyID != "":
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	default:
		creds = ChainCredentials()
	}
	scheme := "http://"
	if cfg.UseTLS {
		scheme = "https://"
	}
	// The same context minio-go gives its providers (STS on MinIO is the
	// server itself).
	v, err := creds.GetWithContext(&credentials.CredContext{Client: http.DefaultClient, Endpoint: scheme + cfg.Endpoint})
	if err != nil || v.AccessKeyID == "" || v.SignerType == credentials.SignatureAnonymous {
		return nil, fmt.Errorf("%w (environment, shared files, IAM)", ErrNoCredentials)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  creds,
		Secure: cfg.UseTLS,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: client: %w", err)
	}
	return client, nil
}

// String names the bucket and prefix of s.
func (s *Store) String() string { return "s3store(" + s.bucket + "/" + s.prefix + ")" }

// ObjectLock reports whether the bucket had object lock enabled when New
// read its configuration, that is whether Put honours RetainUntil.
func (s *Store) ObjectLock() bool { return s.locked }

// Versioned reports whether the bucket keeps old versions of objects
// (versioning enabled or suspended, which includes every object-lock
// bucket), in which case Delete does not remove the bytes of older versions
// (see the package documentation). Key records belong in a bucket for which
// Versioned reports false.
func (s *Store) Versioned(ctx context.Context) (bool, error) {
	if s.locked {
		return true, nil
	}
	v, err := s.client.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		return false, mapErr("versioning", err)
	}
	// Suspended still keeps the versions written while it was enabled.
	return v.Status == "Enabled" || v.Status == "Suspended", nil
}

// name maps a store key to the object name in the bucket.
func (s *Store) name(key string) string { return s.prefix + key }

// mapErr wraps err with the store sentinel its S3 error code means, keeping
// err itself in the chain (a caller may still errors.As it into a
// minio.ErrorResponse).
func mapErr(op string, err error) error {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		var sentinel error
		switch resp.Code {
		case "NoSuchKey":
			sentinel = store.ErrNotFound
		case "PreconditionFailed", "ConditionalRequestConflict":
			// Only IfAbsent writes carry a condition, so a failed one
			// means the key exists (or a concurrent creator won).
			sentinel = store.ErrExists
		case "NoSuchBucket":
			sentinel = ErrNoBucket
		}
		if sentinel != nil {
			return fmt.Errorf("s3store: %s: %w (%w)", op, sentinel, err)
		}
	}
	return fmt.Errorf("s3store: %s: %w", op, err)
}
