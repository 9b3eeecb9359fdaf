package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/storetest"
)

// newStore returns a Store on bucket under prefix, failing t on error.
func newStore(t testing.TB, srv *miniotest.Srv, bucket, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(context.Background(), srv.Client(t), bucket, s3store.Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// freshStore returns the test MinIO server, a new bucket without
// versioning on it, and a store on the whole bucket.
func freshStore(t testing.TB) (*miniotest.Srv, string, *s3store.Store) {
	t.Helper()
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, false)
	return srv, bucket, newStore(t, srv, bucket, "")
}

func randPrefix(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t-" + hex.EncodeToString(b)
}

func put(t testing.TB, s store.Store, key string, data []byte, opts store.PutOptions) error {
	t.Helper()
	return s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), opts)
}

func mustPut(t testing.TB, s store.Store, key string, data []byte) {
	t.Helper()
	if err := put(t, s, key, data, store.PutOptions{}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func getAll(s store.Store, key string) ([]byte, error) {
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

var listAll = testenv.Keys

// The conformance suite, on each kind of bucket the store behaves
// differently on: plain (under a prefix: a store at the bucket root is
// covered by the direct tests), object lock (retention enforced by the
// store, deletes by version) and plain versioning (deletes leave markers).
// The three run in parallel: MinIO, not the CPU, is the bottleneck.
func TestConformance(t *testing.T) {
	srv := miniotest.Server(t)
	tests := []struct {
		name   string
		bucket string
		opts   storetest.Options
	}{
		{"PlainBucket", srv.NewBucket(t, false), storetest.Options{NoRetention: true}},
		{"ObjectLockBucket", srv.NewBucket(t, true), storetest.Options{}},
		{"VersionedBucket", srv.NewVersionedBucket(t), storetest.Options{NoRetention: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.RunWithOptions(t, func(t *testing.T) store.Store {
				return newStore(t, srv, tc.bucket, randPrefix(t))
			}, tc.opts)
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, false)
	ctx := context.Background()
	tests := []struct {
		name   string
		bucket string
		prefix string
		want   error
	}{
		{"missing bucket", "idv-no-such-bucket", "", s3store.ErrNoBucket},
		{"prefix with space", bucket, "a b", store.ErrInvalidKey},
		{"prefix dot segment", bucket, "a/./b", store.ErrInvalidKey},
		{"prefix leading slash", bucket, "/a", store.ErrInvalidKey},
		{"prefix double slash", bucket, "a//", store.ErrInvalidKey},
		{"prefix lone slash", bucket, "/", store.ErrInvalidKey},
		{"prefix too long", bucket, strings.Repeat("p", 512), store.ErrInvalidKey},
		{"prefix ok", bucket, "tenant-1", nil},
		{"prefix ok slash", bucket, "tenant-1/sub/", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s3store.New(ctx, srv.Client(t), tc.bucket, s3store.Options{Prefix: tc.prefix})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("New: err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := s3store.New(ctx, nil, bucket, s3store.Options{}); err == nil {
		t.Fatal("New with a nil client succeeded")
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	srv, _, s := freshStore(t)
	ctx := context.Background()
	mustPut(t, s, "exists", []byte("old"))

	t.Run("GetAbsent", func(t *testing.T) {
		_, err := s.Get(ctx, "absent")
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("err = %v, want store.ErrNotFound", err)
		}
		var resp minio.ErrorResponse
		if !errors.As(err, &resp) || resp.Code != "NoSuchKey" {
			t.Fatalf("the S3 error is not kept in the chain: %v", err)
		}
	})
	t.Run("IfAbsentExisting", func(t *testing.T) {
		for _, size := range []int{3, s3store.PartSize + 1} {
			data := bytes.Repeat([]byte("n"), size)
			for _, declared := range []int64{int64(size), -1} {
				err := s.Put(ctx, "exists", bytes.NewReader(data), declared, store.PutOptions{IfAbsent: true})
				if !errors.Is(err, store.ErrExists) {
					t.Fatalf("size %d declared %d: err = %v, want store.ErrExists", size, declared, err)
				}
				var resp minio.ErrorResponse
				if !errors.As(err, &resp) || resp.StatusCode != 412 {
					t.Fatalf("size %d declared %d: the 412 is not kept in the chain: %v", size, declared, err)
				}
			}
		}
		if got, err := getAll(s, "exists"); err != nil || string(got) != "old" {
			t.Fatalf("existing object changed: %d bytes, %v", len(got), err)
		}
	})
	t.Run("RetentionUnsupported", func(t *testing.T) {
		for _, declared := range []int64{1, -1} {
			err := s.Put(ctx, "ret", strings.NewReader("r"), declared,
				store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
			if !errors.Is(err, store.ErrRetentionUnsupported) {
				t.Fatalf("err = %v, want store.ErrRetentionUnsupported", err)
			}
			if _, err := s.Get(ctx, "ret"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a refused retained Put left an object: %v", err)
			}
		}
	})
	t.Run("InvalidKeys", func(t *testing.T) {
		for _, key := range []string{"", "/a", "a/", "a//b", "../x", "a/.b", "a b", "a\x00"} {
			if err := put(t, s, key, nil, store.PutOptions{}); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Put(%q): err = %v", key, err)
			}
			if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Get(%q): err = %v", key, err)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Delete(%q): err = %v", key, err)
			}
		}
		for _, err := range s.List(ctx, "a//") {
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("List(\"a//\"): err = %v", err)
			}
		}
	})
	t.Run("BucketRemoved", func(t *testing.T) {
		gone := srv.NewBucket(t, false)
		s2 := newStore(t, srv, gone, "")
		if err := srv.Client(t).RemoveBucket(ctx, gone); err != nil {
			t.Fatal(err)
		}
		if _, err := s2.Get(ctx, "k"); !errors.Is(err, s3store.ErrNoBucket) {
			t.Errorf("Get: err = %v, want ErrNoBucket", err)
		}
		if err := put(t, s2, "k", []byte("x"), store.PutOptions{}); !errors.Is(err, s3store.ErrNoBucket) {
			t.Errorf("Put: err = %v, want ErrNoBucket", err)
		}
		for _, err := range s2.List(ctx, "") {
			if !errors.Is(err, s3store.ErrNoBucket) {
				t.Errorf("List: err = %v, want ErrNoBucket", err)
			}
		}
	})
}

// versions lists every version and delete marker of exactly name.
func versions(t *testing.T, c *minio.Client, bucket, name string) []minio.ObjectInfo {
	t.Helper()
	var out []minio.ObjectInfo
	for o := range c.ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Prefix: name, WithVersions: true, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Key == name {
			out = append(out, o)
		}
	}
	return out
}

func TestObjectLock(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, true)
	c := srv.Client(t)
	ctx := context.Background()
	s := newStore(t, srv, bucket, "p")
	if !s.ObjectLock() {
		t.Fatal("ObjectLock() = false on an object-lock bucket")
	}

	t.Run("ComplianceMode", func(t *testing.T) {
		// A fractional time is rounded up, never down.
		until := time.Now().Add(time.Hour).Truncate(time.Second).Add(300 * time.Millisecond)
		for i, declared := range []int64{4, -1} {
			key := fmt.Sprintf("locked/%d", i)
			if err := s.Put(ctx, key, strings.NewReader("data"), declared, store.PutOptions{RetainUntil: until}); err != nil {
				t.Fatal(err)
			}
			mode, date, err := c.GetObjectRetention(ctx, bucket, "p/"+key, "")
			if err != nil {
				t.Fatal(err)
			}
			if mode == nil || *mode != minio.Compliance {
				t.Fatalf("retention mode = %v, want COMPLIANCE", mode)
			}
			if date == nil || date.Before(until) {
				t.Fatalf("retain-until = %v, want at least %v", date, until)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("Delete: err = %v, want store.ErrRetained", err)
			}
			if err := put(t, s, key, []byte("new"), store.PutOptions{}); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("overwrite: err = %v, want store.ErrRetained", err)
			}
			if n := len(versions(t, c, bucket, "p/"+key)); n != 1 {
				t.Fatalf("%d versions after refused writes, want 1", n)
			}
		}
	})
	t.Run("PastRetainUntilIsNoRetention", func(t *testing.T) {
		if err := put(t, s, "past", []byte("x"), store.PutOptions{RetainUntil: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "past"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
	t.Run("DeleteRemovesAllVersions", func(t *testing.T) {
		for i := range 3 {
			mustPut(t, s, "multi", []byte{byte(i)})
		}
		if n := len(versions(t, c, bucket, "p/multi")); n != 3 {
			t.Fatalf("%d versions, want 3", n)
		}
		if err := s.Delete(ctx, "multi"); err != nil {
			t.Fatal(err)
		}
		// An older version must not resurface as the object.
		if _, err := s.Get(ctx, "multi"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want store.ErrNotFound", err)
		}
		if v := versions(t, c, bucket, "p/multi"); len(v) != 0 {
			t.Fatalf("%d versions (or markers) left after Delete", len(v))
		}
		if err := s.Delete(ctx, "multi"); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
	})
	t.Run("LegalHold", func(t *testing.T) {
		mustPut(t, s, "held", []byte("h"))
		on := minio.LegalHoldEnabled
		if err := c.PutObjectLegalHold(ctx, bucket, "p/held", minio.PutObjectLegalHoldOptions{Status: &on}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "held"); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("Delete under legal hold: err = %v, want store.ErrRetained", err)
		}
		off := minio.LegalHoldDisabled
		if err := c.PutObjectLegalHold(ctx, bucket, "p/held", minio.PutObjectLegalHoldOptions{Status: &off}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "held"); err != nil {
			t.Fatalf("Delete after legal hold released: %v", err)
		}
	})
	t.Run("OlderRetainedVersion", func(t *testing.T) {
		// A retained version under a newer one (written around the store)
		// stops Delete with ErrRetained once it surfaces.
		until := time.Now().Add(time.Hour)
		if err := put(t, s, "under", []byte("old"), store.PutOptions{RetainUntil: until}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutObject(ctx, bucket, "p/under", strings.NewReader("new"), 3, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "under"); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("Delete: err = %v, want store.ErrRetained", err)
		}
		if got, err := getAll(s, "under"); err != nil || string(got) != "old" {
			t.Fatalf("after Delete the retained version is not current: %q, %v", got, err)
		}
	})
}

func TestVersioned(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	tests := []struct {
		name   string
		bucket string
		want   bool
	}{
		{"plain", srv.NewBucket(t, false), false},
		{"versioned", srv.NewVersionedBucket(t), true},
		{"object lock", srv.NewBucket(t, true), true},
	}
	for _, tc := range tests {
		got, err := newStore(t, srv, tc.bucket, "").Versioned(context.Background())
		if err != nil || got != tc.want {
			t.Errorf("%s: Versioned() = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestVersionedDeleteLeavesMarker(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	bucket := srv.NewVersionedBucket(t)
	s := newStore(t, srv, bucket, "")
	mustPut(t, s, "k", []byte("v1"))
	mustPut(t, s, "k", []byte("v2"))
	if err := s.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// As documented: the old versions survive under a delete marker.
	v := versions(t, srv.Client(t), bucket, "k")
	markers := 0
	for _, o := range v {
		if o.IsDeleteMarker {
			markers++
		}
	}
	if len(v) != 3 || markers != 1 {
		t.Fatalf("%d versions with %d delete markers, want 2 versions and 1 marker", len(v), markers)
	}
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	s := newStore(t, srv, srv.NewBucket(t, false), "pg")
	const n = 1500
	keys := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%05d", i)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- put(t, s, keys[i], nil, store.PutOptions{})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := listAll(t, s, "page/"); !slices.Equal(got, keys) {
		t.Fatalf("List yields %d keys, want the %d written, in order", len(got), n)
	}
	if got := listAll(t, s, "page/01"); len(got) != 500 || got[0] != "page/01000" {
		t.Fatalf("List(\"page/01\") yields %d keys", len(got))
	}
	// Breaking off just past the first page boundary.
	var seen []string
	for k, err := range s.List(context.Background(), "page/") {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, k)
		if len(seen) == 1001 {
			break
		}
	}
	if !slices.Equal(seen, keys[:1001]) {
		t.Fatalf("broken-off List yielded %d keys", len(seen))
	}
}

func TestPrefixIsolation(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, false)
	a := newStore(t, srv, bucket, "a")
	ab := newStore(t, srv, bucket, "ab/")
	root := newStore(t, srv, bucket, "")
	ctx := context.Background()

	mustPut(t, a, "k", []byte("from a"))
	mustPut(t, ab, "k", []byte("from ab"))
	for _, tc := range []struct {
		s    *s3store.Store
		want string
	}{{a, "from a"}, {ab, "from ab"}} {
		if got, err := getAll(tc.s, "k"); err != nil || string(got) != tc.want {
			t.Fatalf("%v: Get = %q, %v; want %q", tc.s, got, err, tc.want)
		}
		if got := listAll(t, tc.s, ""); !slices.Equal(got, []string{"k"}) {
			t.Fatalf("%v: List = %q", tc.s, got)
		}
	}
	if err := a.Put(ctx, "k2", strings.NewReader("x"), 1, store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if err := ab.Put(ctx, "k2", strings.NewReader("y"), 1, store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatalf("IfAbsent in one prefix blocked by the other: %v", err)
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := getAll(ab, "k"); err != nil {
		t.Fatalf("Delete in one prefix removed the other's object: %v", err)
	}
	// The root store sees both namespaces as ordinary keys.
	if got := listAll(t, root, ""); !slices.Equal(got, []string{"a/k2", "ab/k", "ab/k2"}) {
		t.Fatalf("root List = %q", got)
	}
	// A name no Store can address is skipped, not yielded.
	if _, err := srv.Client(t).PutObject(ctx, bucket, "a/dir/", bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, a, ""); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("List with a foreign object = %q", got)
	}
}

// A multipart upload (unknown size, more than one part) round-trips,
// fails cleanly, and leaves no incomplete upload behind.
func TestUnknownSizeMultipart(t *testing.T) {
	t.Parallel()
	srv, bucket, s := freshStore(t)
	c := srv.Client(t)
	ctx := context.Background()
	data := make([]byte, 2*s3store.PartSize+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "big", io.MultiReader(bytes.NewReader(data)), -1, store.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if got, err := getAll(s, "big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get of the multipart object: %d bytes, %v", len(got), err)
	}
	// Exactly one part long: the multipart path with a single part.
	if err := s.Put(ctx, "exact", bytes.NewReader(data[:s3store.PartSize]), -1, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := getAll(s, "exact"); err != nil || !bytes.Equal(got, data[:s3store.PartSize]) {
		t.Fatalf("Get of the one-part object: %d bytes, %v", len(got), err)
	}

	errBody := errors.New("body failed")
	body := io.MultiReader(bytes.NewReader(data), iotestErrReader{errBody})
	if err := s.Put(ctx, "failed", body, -1, store.PutOptions{}); !errors.Is(err, errBody) {
		t.Fatalf("Put with a failing body: err = %v, want the body's error", err)
	}
	if _, err := s.Get(ctx, "failed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed multipart Put left an object: %v", err)
	}
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Fatalf("incomplete multipart upload left behind")
	}
}

// TestUnknownSizeMultipartRaces: a multipart IfAbsent Put whose key is
// created while its parts upload loses at completion (the condition is
// checked at commit, not only at the start), and a multipart Put whose
// context is cancelled mid-body leaves neither object nor upload.
func TestUnknownSizeMultipartRaces(t *testing.T) {
	t.Parallel()
	srv, bucket, s := freshStore(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("m"), 2*s3store.PartSize)

	var hookErr error
	body := &hookReader{r: bytes.NewReader(data), at: s3store.PartSize + 1, hook: func() {
		hookErr = put(t, s, "contested", []byte("winner"), store.PutOptions{})
	}}
	err := s.Put(ctx, "contested", body, -1, store.PutOptions{IfAbsent: true})
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("IfAbsent multipart Put over a key created meanwhile: err = %v, want store.ErrExists", err)
	}
	if got, err := getAll(s, "contested"); err != nil || string(got) != "winner" {
		t.Fatalf("the concurrent object was replaced: %d bytes, %v", len(got), err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body = &hookReader{r: bytes.NewReader(data), at: s3store.PartSize + 1, hook: cancel}
	if err := s.Put(cctx, "cancelled", body, -1, store.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled multipart Put: err = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "cancelled"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancelled multipart Put left an object: %v", err)
	}
	// The abort of a cancelled Put runs in the background (the caller's
	// context is over): give it a bounded while.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := 0
		for u := range srv.Client(t).ListIncompleteUploads(ctx, bucket, "", true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			left++
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incomplete multipart upload left behind")
		}
	}
}

// hookReader calls hook once, when the reader has passed at bytes.
type hookReader struct {
	r    io.Reader
	n    int
	at   int
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	k, err := h.r.Read(p)
	h.n += k
	if h.hook != nil && h.n >= h.at {
		h.hook()
		h.hook = nil
	}
	return k, err
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// TestSetExpiryRule: the backstop expires only objects tagged ExpiryTag=yes
// under the prefix (so a payload under legal hold, tagged "no", is never
// matched), its multipart-abort rule is on the prefix alone (S3 refuses
// tags on that action), a second call replaces both (including the untagged
// rule older versions installed under the same ID), and rules of others
// survive. That MinIO or S3 then honour the filter cannot be tested here:
// lifecycle rules run in days.
func TestSetExpiryRule(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	for _, versioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("versioned=%t", versioned), func(t *testing.T) {
			bucket := srv.NewBucket(t, false)
			if versioned {
				bucket = srv.NewVersionedBucket(t)
			}
			c := srv.Client(t)
			ctx := context.Background()
			// A rule somebody else installed must survive; the untagged
			// rule an older idvault installed for tenant/blobs/ must not.
			h := sha256.Sum256([]byte("tenant/blobs/"))
			old := "idvault-expiry-" + hex.EncodeToString(h[:16])
			foreign := lifecycle.NewConfiguration()
			foreign.Rules = []lifecycle.Rule{{
				ID: "foreign", Status: "Enabled",
				RuleFilter: lifecycle.Filter{Prefix: "other/"},
				Expiration: lifecycle.Expiration{Days: 400},
			}, {
				ID: old, Status: "Enabled",
				RuleFilter: lifecycle.Filter{Prefix: "tenant/blobs/"},
				Expiration: lifecycle.Expiration{Days: 3},
			}}
			if err := c.SetBucketLifecycle(ctx, bucket, foreign); err != nil {
				t.Fatal(err)
			}
			s := newStore(t, srv, bucket, "tenant")
			for _, step := range []struct {
				prefix string
				days   int
			}{{"blobs/", 3}, {"audit/", 30}, {"blobs/", 5}} {
				if err := s.SetExpiryRule(ctx, step.prefix, step.days); err != nil {
					t.Fatalf("SetExpiryRule(%q, %d): %v", step.prefix, step.days, err)
				}
			}
			cfg, err := c.GetBucketLifecycle(ctx, bucket)
			if err != nil {
				t.Fatal(err)
			}
			// What each rule does, by the objects it selects.
			type sel struct {
				prefix string
				tag    string // "key=value" the rule requires, or ""
			}
			// expire: the rules that delete objects after days; markers:
			// the rules that only remove expired delete markers (and abort
			// stale multipart uploads: MinIO accepts that action but does not
			// keep it, so it cannot be read back here).
			expire, markers := map[sel]int{}, map[sel]bool{}
			for _, r := range cfg.Rules {
				f := sel{prefix: r.RuleFilter.Prefix}
				switch {
				case !r.RuleFilter.And.IsEmpty():
					f.prefix = r.RuleFilter.And.Prefix
					if len(r.RuleFilter.And.Tags) != 1 || r.RuleFilter.And.ObjectSizeLessThan != 0 || r.RuleFilter.And.ObjectSizeGreaterThan != 0 {
						t.Fatalf("rule %s: filter %+v, want a prefix and one tag", r.ID, r.RuleFilter.And)
					}
					f.tag = r.RuleFilter.And.Tags[0].Key + "=" + r.RuleFilter.And.Tags[0].Value
				case !r.RuleFilter.Tag.IsEmpty():
					f.tag = r.RuleFilter.Tag.Key + "=" + r.RuleFilter.Tag.Value
				}
				if r.Status != "Enabled" {
					t.Errorf("rule %s for %+v is %s", r.ID, f, r.Status)
				}
				switch {
				case r.Expiration.Days > 0:
					expire[f] = int(r.Expiration.Days)
					if r.ID != "foreign" && int(r.NoncurrentVersionExpiration.NoncurrentDays) != int(r.Expiration.Days) {
						t.Errorf("rule for %+v: noncurrent days %d", f, r.NoncurrentVersionExpiration.NoncurrentDays)
					}
				case bool(r.Expiration.DeleteMarker):
					if r.NoncurrentVersionExpiration.NoncurrentDays != 0 {
						t.Errorf("rule %s for %+v expires noncurrent versions", r.ID, f)
					}
					markers[f] = true
				default:
					t.Errorf("rule %s for %+v: unexpected %+v", r.ID, f, r)
				}
				if r.AbortIncompleteMultipartUpload.DaysAfterInitiation != 0 && f.tag != "" {
					t.Errorf("rule %s: multipart abort with a tag filter (S3 refuses it)", r.ID)
				}
			}
			tagged := s3store.ExpiryTag + "=yes"
			wantExpire := map[sel]int{{"other/", ""}: 400, {"tenant/blobs/", tagged}: 5, {"tenant/audit/", tagged}: 30}
			wantMarkers := map[sel]bool{{"tenant/blobs/", ""}: true, {"tenant/audit/", ""}: true}
			if !maps.Equal(expire, wantExpire) || !maps.Equal(markers, wantMarkers) || len(cfg.Rules) != 5 {
				t.Fatalf("%d rules: expire %v, markers %v; want expire %v, markers %v", len(cfg.Rules), expire, markers, wantExpire, wantMarkers)
			}
		})
	}
	s := newStore(t, srv, srv.NewBucket(t, false), "")
	for _, days := range []int{0, -1} {
		if err := s.SetExpiryRule(context.Background(), "x/", days); !errors.Is(err, s3store.ErrInvalidDays) {
			t.Errorf("days=%d: err = %v, want ErrInvalidDays", days, err)
		}
	}
	if err := s.SetExpiryRule(context.Background(), "a//", 1); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("bad prefix: err = %v, want store.ErrInvalidKey", err)
	}
}

func TestDial(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	bucket := srv.NewBucket(t, false)
	ctx := context.Background()
	cfg := s3store.Config{
		Endpoint: srv.Endpoint(), AccessKeyID: srv.AccessKey(), SecretAccessKey: srv.SecretKey(),
		Bucket: bucket, Prefix: "dialed",
	}
	s, err := s3store.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, s); strings.Contains(out, srv.SecretKey()) {
			t.Errorf("%s of a Store shows the secret key", verb)
		}
	}
	mustPut(t, s, "k", []byte("v"))
	if got := listAll(t, newStore(t, srv, bucket, ""), ""); !slices.Equal(got, []string{"dialed/k"}) {
		t.Fatalf("Dial ignored the prefix: %q", got)
	}
	bad := cfg
	bad.SecretAccessKey += "x"
	if _, err := s3store.Dial(ctx, bad); err == nil {
		t.Fatal("Dial with a wrong secret succeeded")
	} else if strings.Contains(err.Error(), bad.SecretAccessKey) {
		t.Fatal("the error quotes the secret")
	}
	missing := cfg
	missing.Bucket = "idv-missing"
	if _, err := s3store.Dial(ctx, missing); !errors.Is(err, s3store.ErrNoBucket) {
		t.Fatalf("Dial of a missing bucket: err = %v, want ErrNoBucket", err)
	}
}

func TestConfigRedactsSecret(t *testing.T) {
	const secret = "s3cr3t-Value-123"
	cfg := s3store.Config{Endpoint: "minio:9000", AccessKeyID: "AKID", SecretAccessKey: secret, SessionToken: secret + "-tok", Bucket: "b"}
	type wrapper struct{ C s3store.Config }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10.3v"} {
		for _, v := range []any{cfg, &cfg, wrapper{cfg}, []s3store.Config{cfg}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, secret) || strings.Contains(out, hex.EncodeToString([]byte(secret))) ||
				strings.Contains(strings.ToLower(out), strings.ToLower(hex.EncodeToString([]byte(secret)))) {
				t.Errorf("%s of %T shows the secret", verb, v)
			}
		}
	}
	if !strings.Contains(cfg.String(), "minio:9000") || !strings.Contains(cfg.String(), "REDACTED") {
		t.Errorf("String() = %q, want the endpoint and a redaction mark", cfg.String())
	}
	if strings.Contains(s3store.Config{}.String(), "REDACTED") {
		t.Error("an empty secret is shown as redacted")
	}
}
