package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// errStoreURL marks a --store value (or $IDVAULT_STORE) that cannot be used.
// Its messages never quote the value: a mistyped URL may hold a credential.
var errStoreURL = errors.New("invalid store URL")

// errNoCredentials: an s3:// store without credentials in the environment.
var errNoCredentials = errors.New("no S3 credentials in the environment")

// storeKind says which backend a storeSpec selects.
type storeKind int

const (
	kindFile storeKind = iota + 1
	kindS3
)

// defaultS3Endpoint is used when an s3:// URL names no endpoint.
const defaultS3Endpoint = "s3.amazonaws.com"

// storeSpec is a parsed store URL. It holds no credential: those come from
// the environment at open time, so that a spec can always be printed.
type storeSpec struct {
	Kind storeKind

	Path string // kindFile: absolute and clean

	Bucket   string // kindS3
	Endpoint string // host[:port]
	TLS      bool
	Prefix   string // "" or a valid store key without trailing '/'
	Region   string

	// Creds says where S3 credentials come from (not part of the URL).
	Creds s3CredentialSource
}

// String renders s as a canonical store URL, which parseStoreURL maps back
// to s.
func (s storeSpec) String() string {
	switch s.Kind {
	case kindFile:
		return (&url.URL{Scheme: "file", Path: s.Path}).String()
	case kindS3:
		q := url.Values{}
		q.Set("endpoint", s.Endpoint)
		q.Set("tls", strconv.FormatBool(s.TLS))
		if s.Prefix != "" {
			q.Set("prefix", s.Prefix)
		}
		if s.Region != "" {
			q.Set("region", s.Region)
		}
		return (&url.URL{Scheme: "s3", Host: s.Bucket, RawQuery: q.Encode()}).String()
	}
	return "invalid-store"
}

// parseStoreURL parses a --store value:
//
//	/abs/path, rel/path                 a directory (fsstore)
//	file:///abs/path                    the same, as a URL (percent-encoding allowed)
//	s3://bucket?endpoint=host:port&tls=false&prefix=p&region=r
//	s3://bucket/p                       the same as prefix=p
//
// For s3, endpoint defaults to s3.amazonaws.com and tls to true. Unknown or
// repeated query parameters, credentials in the URL and fragments are
// refused, so that a typo never silently selects another store. Relative
// paths are made absolute against the working directory.
func parseStoreURL(raw string) (storeSpec, error) {
	if raw == "" {
		return storeSpec{}, fmt.Errorf("%w: empty", errStoreURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return storeSpec{}, fmt.Errorf("%w: control character", errStoreURL)
	}
	scheme, _, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		// "s3:bucket" and "file:x" are mistakes, not file names.
		if lower := strings.ToLower(raw); strings.HasPrefix(lower, "s3:") || strings.HasPrefix(lower, "file:") {
			return storeSpec{}, fmt.Errorf("%w: expected file:///path or s3://bucket", errStoreURL)
		}
		return fileSpec(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the input: say only that it did not parse.
		return storeSpec{}, fmt.Errorf("%w: not a URL", errStoreURL)
	}
	if u.User != nil {
		return storeSpec{}, fmt.Errorf("%w: credentials do not belong in the URL; set MINIO_ROOT_USER/MINIO_ROOT_PASSWORD, MINIO_ACCESS_KEY/MINIO_SECRET_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", errStoreURL)
	}
	if u.Fragment != "" || u.RawFragment != "" || strings.Contains(raw, "#") {
		return storeSpec{}, fmt.Errorf("%w: unexpected fragment", errStoreURL)
	}
	switch strings.ToLower(scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return storeSpec{}, fmt.Errorf("%w: file URL with a host other than localhost", errStoreURL)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return storeSpec{}, fmt.Errorf("%w: file URL with a query", errStoreURL)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return storeSpec{}, fmt.Errorf("%w: file URL needs an absolute path (file:///dir)", errStoreURL)
		}
		return fileSpec(u.Path)
	case "s3":
		return s3Spec(u)
	default:
		return storeSpec{}, fmt.Errorf("%w: unknown scheme (want file:// or s3://)", errStoreURL)
	}
}

func fileSpec(p string) (storeSpec, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return storeSpec{}, fmt.Errorf("%w: empty path", errStoreURL)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return storeSpec{}, fmt.Errorf("%w: %v", errStoreURL, err)
	}
	return storeSpec{Kind: kindFile, Path: abs}, nil
}

func s3Spec(u *url.URL) (storeSpec, error) {
	s := storeSpec{Kind: kindS3, Bucket: u.Host, Endpoint: defaultS3Endpoint, TLS: true}
	if !validBucket(s.Bucket) {
		return storeSpec{}, fmt.Errorf("%w: bucket must be 3-63 characters of [a-z0-9.-], starting and ending with a letter or digit", errStoreURL)
	}
	if u.Opaque != "" {
		return storeSpec{}, fmt.Errorf("%w: malformed s3 URL", errStoreURL)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return storeSpec{}, fmt.Errorf("%w: malformed query", errStoreURL)
	}
	for k, v := range q {
		if len(v) != 1 {
			return storeSpec{}, fmt.Errorf("%w: parameter %q given %d times", errStoreURL, clip(k), len(v))
		}
		val := v[0]
		switch k {
		case "endpoint":
			if !validEndpoint(val) {
				return storeSpec{}, fmt.Errorf("%w: endpoint must be host or host:port, without scheme or path", errStoreURL)
			}
			s.Endpoint = strings.ToLower(val)
		case "tls":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return storeSpec{}, fmt.Errorf("%w: tls must be true or false", errStoreURL)
			}
			s.TLS = b
		case "prefix":
			s.Prefix = val
		case "region":
			if !validRegion(val) {
				return storeSpec{}, fmt.Errorf("%w: region must be 1-32 characters of [a-z0-9-]", errStoreURL)
			}
			s.Region = val
		default:
			return storeSpec{}, fmt.Errorf("%w: unknown parameter %q (want endpoint, tls, prefix, region)", errStoreURL, clip(k))
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if _, ok := q["prefix"]; ok {
			return storeSpec{}, fmt.Errorf("%w: prefix given both as path and as parameter", errStoreURL)
		}
		s.Prefix = p
	}
	s.Prefix = strings.TrimSuffix(s.Prefix, "/")
	if s.Prefix != "" {
		if err := store.ValidKey(s.Prefix); err != nil || len(s.Prefix) >= store.MaxKeyLen {
			return storeSpec{}, fmt.Errorf("%w: prefix must be a valid store key ([A-Za-z0-9._-] segments)", errStoreURL)
		}
	}
	return s, nil
}

// clip shortens a user-supplied name quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// validBucket applies the S3 bucket naming rules that matter here.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && c != '.' && c != '-' {
			return false
		}
		if (i == 0 || i == len(b)-1) && !alnum {
			return false
		}
	}
	return !strings.Contains(b, "..")
}

// validEndpoint accepts host, host:port and [v6]:port.
func validEndpoint(e string) bool {
	if e == "" || len(e) > 255 || strings.ContainsAny(e, "/@?#\\ %") {
		return false
	}
	host, port := e, ""
	if h, p, err := net.SplitHostPort(e); err == nil {
		host, port = h, p
	} else if strings.ContainsAny(e, ":[]") {
		return false // a bare IPv6 address or a malformed port
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return false
		}
	}
	if host == "" {
		return false
	}
	if strings.Contains(host, ":") {
		return net.ParseIP(host) != nil
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validRegion(r string) bool {
	if r == "" || len(r) > 32 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// credentialPairs are the environment variables read for S3 credentials,
// in order of preference; the first complete pair wins.
var credentialPairs = [][2]string{
	{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
	{"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"},
	{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
}

// s3Credentials returns the first complete credential pair in env. Errors
// name variables, never values.
func s3Credentials(env func(string) string) (access, secret string, err error) {
	for _, p := range credentialPairs {
		a, s := env(p[0]), env(p[1])
		if a != "" && s != "" {
			return a, s, nil
		}
	}
	return "", "", fmt.Errorf("%w: set MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, MINIO_ACCESS_KEY and MINIO_SECRET_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", errNoCredentials)
}

// s3Client is a client for the S3 store of s, with its credentials
// (s3Config).
func s3Client(s storeSpec, env func(string) string) (*minio.Client, error) {
	cfg, err := s3Config(s, env)
	if err != nil {
		return nil, err
	}
	return s3store.NewClient(cfg)
}

// s3Config is the s3store.Config for s: the first complete credential pair
// in env (with AWS_SESSION_TOKEN for the AWS pair), else s3store's chain
// (shared files, IAM role, web identity), which reads the process
// environment itself.
func s3Config(s storeSpec, env func(string) string) (s3store.Config, error) {
	cfg := s3store.Config{Endpoint: s.Endpoint, Bucket: s.Bucket, UseTLS: s.TLS, Region: s.Region, Prefix: s.Prefix}
	if s.Creds.file != "" {
		// A named credentials file, and nothing else: the environment
		// must not override what the deployment says.
		if _, err := os.Stat(s.Creds.file); err != nil {
			return cfg, fmt.Errorf("S3 credentials file: %w", err)
		}
		cfg.Credentials = credentials.NewFileAWSCredentials(s.Creds.file, env("AWS_PROFILE"))
		return cfg, nil
	}
	access, secret, err := s3Credentials(env)
	switch {
	case err == nil:
		cfg.AccessKeyID, cfg.SecretAccessKey = access, secret
		if access == env("AWS_ACCESS_KEY_ID") {
			cfg.SessionToken = env("AWS_SESSION_TOKEN")
		}
	case errors.Is(err, errNoCredentials):
		// s3store.Dial falls back on ChainCredentials.
	default:
		return cfg, err
	}
	return cfg, nil
}

// openStore opens the store s names. A file store must already exist: a
// mistyped path must not yield a fresh, empty store that verifies "OK".
func openStore(ctx context.Context, s storeSpec, env func(string) string) (store.Store, error) {
	switch s.Kind {
	case kindFile:
		fi, err := os.Stat(s.Path)
		if err != nil {
			return nil, fmt.Errorf("store directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("store %s is not a directory", s.Path)
		}
		return fsstore.Open(s.Path)
	case kindS3:
		cfg, err := s3Config(s, env)
		if err != nil {
			return nil, err
		}
		return s3store.Dial(ctx, cfg)
	}
	return nil, fmt.Errorf("%w: no store", errStoreURL)
}
