package s3store

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/idvault/idvault/vault/store"
)

// chunkReader returns data in reads of at most n bytes, optionally with
// (0, nil) reads in between and the final data together with io.EOF.
type chunkReader struct {
	data      []byte
	n         int
	empties   int  // (0, nil) reads before each data read
	eofInline bool // return io.EOF with the last bytes
	pending   int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if c.pending < c.empties {
		c.pending++
		return 0, nil
	}
	c.pending = 0
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	if c.eofInline && len(c.data) == 0 {
		return k, io.EOF
	}
	return k, nil
}

// stallReader never makes progress: (0, nil) forever.
type stallReader struct{}

func (stallReader) Read([]byte) (int, error) { return 0, nil }

func TestSizeReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10) // 100 bytes
	errBody := errors.New("body failed")
	tests := []struct {
		name     string
		body     func() io.Reader
		size     int64
		want     error // nil: the whole body comes through
		wantData int   // bytes passed on before the error (checked when want == nil)
	}{
		{"exact", func() io.Reader { return bytes.NewReader(data) }, 100, nil, 100},
		{"exact-1B-reads", func() io.Reader { return &chunkReader{data: data, n: 1} }, 100, nil, 100},
		{"exact-eof-inline", func() io.Reader { return &chunkReader{data: data, n: 7, eofInline: true} }, 100, nil, 100},
		{"exact-empty-reads", func() io.Reader { return &chunkReader{data: data, n: 33, empties: 3} }, 100, nil, 100},
		{"exact-half-reader", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }, 100, nil, 100},
		{"exact-data-err", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }, 100, nil, 100},
		{"empty", func() io.Reader { return bytes.NewReader(nil) }, 0, nil, 0},
		{"short", func() io.Reader { return bytes.NewReader(data) }, 101, store.ErrSizeMismatch, 0},
		{"short-eof-inline", func() io.Reader { return &chunkReader{data: data, n: 50, eofInline: true} }, 101, store.ErrSizeMismatch, 0},
		{"long-by-1", func() io.Reader { return bytes.NewReader(data) }, 99, store.ErrSizeMismatch, 0},
		{"long-1B-reads", func() io.Reader { return &chunkReader{data: data, n: 1} }, 50, store.ErrSizeMismatch, 0},
		{"long-after-empty-reads", func() io.Reader { return &chunkReader{data: data, n: 10, empties: 5} }, 90, store.ErrSizeMismatch, 0},
		{"declared-0-body-1", func() io.Reader { return bytes.NewReader(data[:1]) }, 0, store.ErrSizeMismatch, 0},
		{"failing", func() io.Reader { return io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(errBody)) }, 100, errBody, 0},
		{"failing-at-end", func() io.Reader { return io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errBody)) }, 100, errBody, 0},
		{"stalls-at-end", func() io.Reader { return io.MultiReader(bytes.NewReader(data), stallReader{}) }, 100, errNoProgress, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sr := &sizeReader{r: tc.body(), left: tc.size}
			got, err := io.ReadAll(sr)
			if tc.want == nil {
				if err != nil || sr.failure() != nil {
					t.Fatalf("ReadAll: %v (failure %v)", err, sr.failure())
				}
				if !bytes.Equal(got, data[:tc.wantData]) {
					t.Fatalf("passed on %d bytes, want %d", len(got), tc.wantData)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(sr.failure(), tc.want) {
				t.Fatalf("ReadAll: err = %v, failure = %v; want %v", err, sr.failure(), tc.want)
			}
			// The point of the check: never all the declared bytes of a
			// body that turns out to be wrong.
			if int64(len(got)) >= tc.size && tc.size > 0 {
				t.Fatalf("passed on all %d declared bytes of a bad body", len(got))
			}
		})
	}
}

// FuzzSizeReader: whatever the body's length, chunking and declared size,
// sizeReader passes the body on whole when the sizes agree and otherwise
// fails with ErrSizeMismatch before passing on the declared count.
func FuzzSizeReader(f *testing.F) {
	f.Add([]byte("hello"), int64(5), uint8(1), uint8(0), false)
	f.Add([]byte("hello"), int64(4), uint8(2), uint8(1), true)
	f.Add([]byte("hello"), int64(6), uint8(5), uint8(0), true)
	f.Add([]byte{}, int64(0), uint8(1), uint8(0), false)
	f.Add([]byte{1}, int64(0), uint8(1), uint8(0), false)
	f.Fuzz(func(t *testing.T, data []byte, size int64, chunk, empties uint8, eofInline bool) {
		if size < 0 || chunk == 0 || empties > 5 {
			t.Skip()
		}
		sr := &sizeReader{r: &chunkReader{data: data, n: int(chunk), empties: int(empties), eofInline: eofInline}, left: size}
		got, err := io.ReadAll(sr)
		if int64(len(data)) == size {
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("matching size: %d bytes, %v", len(got), err)
			}
			return
		}
		if !errors.Is(err, store.ErrSizeMismatch) {
			t.Fatalf("size %d for %d bytes: err = %v", size, len(data), err)
		}
		if size > 0 && int64(len(got)) >= size {
			t.Fatalf("size %d for %d bytes: passed on %d bytes", size, len(data), len(got))
		}
	})
}

func TestRetained(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	const mode, until, hold = "X-Amz-Object-Lock-Mode", "X-Amz-Object-Lock-Retain-Until-Date", "X-Amz-Object-Lock-Legal-Hold"
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"none", hdr(), false},
		{"compliance future", hdr(mode, "COMPLIANCE", until, "2026-01-02T03:04:06.000Z"), true},
		{"governance future", hdr(mode, "GOVERNANCE", until, "2026-01-02T03:04:06Z"), true},
		{"past", hdr(mode, "COMPLIANCE", until, "2026-01-02T03:04:04Z"), false},
		{"exactly now", hdr(mode, "COMPLIANCE", until, "2026-01-02T03:04:05Z"), false},
		{"date without mode", hdr(until, "2027-01-01T00:00:00Z"), false},
		{"unreadable date", hdr(mode, "COMPLIANCE", until, "soon"), true},
		{"legal hold on", hdr(hold, "ON"), true},
		{"legal hold off", hdr(hold, "OFF"), false},
	}
	for _, tc := range tests {
		if got := retained(tc.h, now); got != tc.want {
			t.Errorf("%s: retained = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCeilSecond(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct{ in, want time.Time }{
		{base, base},
		{base.Add(time.Nanosecond), base.Add(time.Second)},
		{base.Add(999 * time.Millisecond), base.Add(time.Second)},
	}
	for _, tc := range tests {
		if got := ceilSecond(tc.in); !got.Equal(tc.want) {
			t.Errorf("ceilSecond(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNormPrefix(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"a", "a/", true},
		{"a/", "a/", true},
		{"a/b", "a/b/", true},
		{"a//", "", false},
		{"/", "", false},
		{"a/../b", "", false},
		{".a", "", false},
	}
	for _, tc := range tests {
		got, err := normPrefix(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("normPrefix(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("normPrefix(%q): err = %v, want ErrInvalidKey", tc.in, err)
		}
	}
}

// TestExpiryRulesXML checks the lifecycle XML SetExpiryRule sends, which
// MinIO does not give back whole (it drops AbortIncompleteMultipartUpload):
// the expiration requires the prefix and ExpiryTag=yes; the multipart abort
// is on the prefix alone, since S3 refuses tags on that action.
func TestExpiryRulesXML(t *testing.T) {
	cfg := lifecycle.NewConfiguration()
	cfg.Rules = expiryRules("tenant/blobs/", 4)
	b, err := xml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"<ID>" + expiryRuleID("tenant/blobs/") + "</ID><Filter><And><Prefix>tenant/blobs/</Prefix><Tag><Key>idvault-expire</Key><Value>yes</Value></Tag></And></Filter>",
		"<Expiration><Days>4</Days></Expiration>",
		"<NoncurrentVersionExpiration><NoncurrentDays>4</NoncurrentDays></NoncurrentVersionExpiration>",
		"<AbortIncompleteMultipartUpload><DaysAfterInitiation>4</DaysAfterInitiation></AbortIncompleteMultipartUpload><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration><ID>" + abortRuleID("tenant/blobs/") + "</ID><Filter><Prefix>tenant/blobs/</Prefix></Filter>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lifecycle XML lacks %s\nin %s", want, got)
		}
	}
	if strings.Count(got, "<Rule>") != 2 || strings.Count(got, "<Tag>") != 1 {
		t.Errorf("want two rules, one tag filter: %s", got)
	}
}
