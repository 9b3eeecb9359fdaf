package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

// Options adapts the suite to what a backend can do. The zero value runs
// every test, retention included.
type Options struct {
	// NoRetention declares that the store cannot make objects write-once
	// (for example an S3 bucket created without object lock). The suite
	// then checks that Put with RetainUntil fails with an error wrapping
	// store.ErrRetentionUnsupported and stores nothing, instead of checking
	// that retention is enforced.
	NoRetention bool
}

// Run runs the whole conformance suite against the stores made by
// newStore, which must return a fresh, empty store on each call; it is
// called once per subtest with that subtest's t, so it may register
// cleanups with t.Cleanup or use t.TempDir.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	RunWithOptions(t, newStore, Options{})
}

// RunWithOptions is Run for a backend that lacks a capability (see
// Options).
func RunWithOptions(t *testing.T, newStore func(t *testing.T) store.Store, opts Options) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store) // on a fresh store
	}{
		{"RoundTrip", testRoundTrip},
		{"LongKeys", testLongKeys},
		{"Overwrite", testOverwrite},
		{"SizeMismatch", testSizeMismatch},
		{"FailingBody", testFailingBody},
		{"Cancel", testCancel},
		{"GetAbsent", testGetAbsent},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"ListOrder", testListOrder},
		{"ListPrefix", testListPrefix},
		{"ListMany", testListMany},
		{"ListWhileDeleting", testListWhileDeleting},
		{"AtomicOverwrite", testAtomicOverwrite},
		{"Concurrent", testConcurrent},
		{"ExpiryTagger", testExpiryTagger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
	// IfAbsent makes a fresh store for each of its cases.
	t.Run("IfAbsent", func(t *testing.T) { testIfAbsent(t, newStore) })
	if opts.NoRetention {
		t.Run("RetentionUnsupported", func(t *testing.T) { testRetentionUnsupported(t, newStore(t)) })
	} else {
		t.Run("Retention", func(t *testing.T) { testRetention(t, newStore(t)) })
	}
}

// opaqueReader hides every method of the reader it wraps except Read
// (Seek, WriterTo, Len, Size), so a backend cannot learn the length or
// rewind the body: the body of an HTTP upload looks like this.
type opaqueReader struct{ r io.Reader }

func (o *opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func opaque(b []byte) io.Reader { return &opaqueReader{bytes.NewReader(b)} }

// payload returns n deterministic pseudo-random bytes; distinct seeds give
// distinct contents, so a backend that mixes up objects is caught.
func payload(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b) // never fails
	return b
}

func put(ctx context.Context, s store.Store, key string, data []byte, opts store.PutOptions) error {
	return s.Put(ctx, key, opaque(data), int64(len(data)), opts)
}

func mustPut(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := put(t.Context(), s, key, data, store.PutOptions{}); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

// get reads the whole object under key; the error is Get's or the read's.
func get(ctx context.Context, s store.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return b, err
}

// checkObject fails t unless the object under key holds exactly want and
// is listed. Contents are never printed: only lengths.
func checkObject(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	got, err := get(t.Context(), s, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) returned %d bytes that differ from the %d bytes stored", key, len(got), len(want))
	}
	if !slices.Contains(listAll(t, s, key), key) {
		t.Fatalf("List(%q) does not yield the stored key", key)
	}
}

// checkAbsent fails t unless key is absent both for Get and for List.
func checkAbsent(t *testing.T, s store.Store, key string) {
	t.Helper()
	_, err := get(t.Context(), s, key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) of an absent key: err = %v, want store.ErrNotFound", key, err)
	}
	if slices.Contains(listAll(t, s, key), key) {
		t.Fatalf("List(%q) yields a key that Get reports absent", key)
	}
}

// listAll collects List(prefix), failing t on any error.
func listAll(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for k, err := range s.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q) after %d keys: %v", prefix, len(keys), err)
		}
		keys = append(keys, k)
	}
	return keys
}

// checkSorted fails t unless keys are in strictly increasing byte order.
func checkSorted(t *testing.T, what string, keys []string) {
	t.Helper()
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("%s: key %q at %d is not after %q", what, keys[i], i, keys[i-1])
		}
	}
}
