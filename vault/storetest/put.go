package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/idvault/idvault/vault/store"
)

func testRoundTrip(t *testing.T, s store.Store) {
	sizes := []struct {
		name string
		n    int
	}{
		{"empty", 0},
		{"1B", 1},
		{"5MiB", 5 << 20},
	}
	bodies := []struct {
		name string
		make func(b []byte) (io.Reader, int64)
	}{
		{"bytes.Reader", func(b []byte) (io.Reader, int64) { return bytes.NewReader(b), int64(len(b)) }},
		{"non-seekable", func(b []byte) (io.Reader, int64) { return opaque(b), int64(len(b)) }},
		{"unknown-size", func(b []byte) (io.Reader, int64) { return opaque(b), -1 }},
		{"short-reads", func(b []byte) (io.Reader, int64) { return iotest.HalfReader(opaque(b)), int64(len(b)) }},
		{"data-with-EOF", func(b []byte) (io.Reader, int64) { return iotest.DataErrReader(opaque(b)), -1 }},
	}
	for i, sz := range sizes {
		for j, body := range bodies {
			t.Run(sz.name+"/"+body.name, func(t *testing.T) {
				key := fmt.Sprintf("rt/%s/%s", sz.name, strings.ReplaceAll(body.name, ".", "-"))
				data := payload(uint64(10*i+j), sz.n)
				r, size := body.make(data)
				if err := s.Put(t.Context(), key, r, size, store.PutOptions{}); err != nil {
					t.Fatalf("Put: %v", err)
				}
				checkObject(t, s, key, data)
			})
		}
	}
	// Every object is still intact after all the others were written.
	for i, sz := range sizes {
		for j, body := range bodies {
			key := fmt.Sprintf("rt/%s/%s", sz.name, strings.ReplaceAll(body.name, ".", "-"))
			checkObject(t, s, key, payload(uint64(10*i+j), sz.n))
		}
	}
}

func testLongKeys(t *testing.T, s store.Store) {
	// Filesystems limit one path segment to 255 bytes; keys of MaxKeyLen
	// bytes in segments no longer than that work on every backend.
	keys := []string{
		strings.Repeat("k", 255),
		strings.Repeat("a", 200) + "/" + strings.Repeat("b", 200) + "/" + strings.Repeat("c", store.MaxKeyLen-402),
		strings.Repeat("x/", store.MaxKeyLen/2-1) + "yz",
		"A", "z", "-", "_", "0", "a.b.c", "a--b__c",
	}
	for i, key := range keys {
		if err := store.ValidKey(key); err != nil {
			t.Fatalf("test key %d (%d bytes) is not valid: %v", i, len(key), err)
		}
		data := payload(uint64(i), 17+i)
		mustPut(t, s, key, data)
		checkObject(t, s, key, data)
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete of a %d-byte key: %v", len(key), err)
		}
		checkAbsent(t, s, key)
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	const key = "ow/obj"
	long, short := payload(1, 100_000), payload(2, 10)
	mustPut(t, s, key, long)
	// A shorter object replaces a longer one entirely (no stale tail).
	mustPut(t, s, key, short)
	checkObject(t, s, key, short)
	mustPut(t, s, key, nil)
	checkObject(t, s, key, nil)
	mustPut(t, s, key, long)
	checkObject(t, s, key, long)
	if got := listAll(t, s, ""); len(got) != 1 {
		t.Fatalf("after overwrites List yields %d keys, want 1", len(got))
	}
}

func testSizeMismatch(t *testing.T, s store.Store) {
	tests := []struct {
		name     string
		body     int
		declared int64
	}{
		{"short", 5, 10},
		{"long", 10, 5},
		{"declared-0-body-1", 1, 0},
		{"declared-1-body-0", 0, 1},
		{"1MiB-one-short", 1 << 20, 1<<20 + 1},
		{"1MiB-one-long", 1<<20 + 1, 1 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fresh := "sm/new/" + tt.name
			err := s.Put(t.Context(), fresh, opaque(payload(uint64(i), tt.body)), tt.declared, store.PutOptions{})
			if !errors.Is(err, store.ErrSizeMismatch) {
				t.Fatalf("Put of %d bytes declared as %d: err = %v, want store.ErrSizeMismatch", tt.body, tt.declared, err)
			}
			checkAbsent(t, s, fresh)

			old := "sm/old/" + tt.name
			oldData := payload(uint64(100+i), 33)
			mustPut(t, s, old, oldData)
			err = s.Put(t.Context(), old, opaque(payload(uint64(i), tt.body)), tt.declared, store.PutOptions{})
			if !errors.Is(err, store.ErrSizeMismatch) {
				t.Fatalf("overwriting Put of %d bytes declared as %d: err = %v, want store.ErrSizeMismatch", tt.body, tt.declared, err)
			}
			checkObject(t, s, old, oldData)

			err = s.Put(t.Context(), fresh, opaque(payload(uint64(i), tt.body)), tt.declared, store.PutOptions{IfAbsent: true})
			if !errors.Is(err, store.ErrSizeMismatch) {
				t.Fatalf("IfAbsent Put of %d bytes declared as %d: err = %v, want store.ErrSizeMismatch", tt.body, tt.declared, err)
			}
			checkAbsent(t, s, fresh)
		})
	}
}

func testIfAbsent(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("AbsentKeyIsCreated", func(t *testing.T) {
		s := newStore(t)
		data := payload(1, 64)
		if err := put(t.Context(), s, "ia/k", data, store.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("IfAbsent Put of an absent key: %v", err)
		}
		checkObject(t, s, "ia/k", data)
	})
	t.Run("ExistingKeyUnchanged", func(t *testing.T) {
		s := newStore(t)
		old := payload(1, 64)
		mustPut(t, s, "ia/k", old)
		for _, n := range []int{0, 64, 100} {
			err := put(t.Context(), s, "ia/k", payload(2, n), store.PutOptions{IfAbsent: true})
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("IfAbsent Put of an existing key: err = %v, want store.ErrExists", err)
			}
			checkObject(t, s, "ia/k", old)
		}
	})
	t.Run("AfterDelete", func(t *testing.T) {
		s := newStore(t)
		mustPut(t, s, "ia/k", payload(1, 8))
		if err := s.Delete(t.Context(), "ia/k"); err != nil {
			t.Fatal(err)
		}
		data := payload(2, 9)
		if err := put(t.Context(), s, "ia/k", data, store.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("IfAbsent Put after Delete: %v", err)
		}
		checkObject(t, s, "ia/k", data)
	})
	t.Run("Concurrent32", func(t *testing.T) {
		s := newStore(t)
		const writers = 32
		const key = "ia/race/ledger"
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				<-start
				errs[i] = put(t.Context(), s, key, payload(uint64(i), 1000+i), store.PutOptions{IfAbsent: true})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("writers %d and %d both succeeded", winner, i)
				}
				winner = i
			case !errors.Is(err, store.ErrExists):
				t.Fatalf("losing writer %d: err = %v, want store.ErrExists", i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("none of %d IfAbsent writers succeeded", writers)
		}
		checkObject(t, s, key, payload(uint64(winner), 1000+winner))
	})
}

// failingReader yields the first n bytes of data, then err.
type failingReader struct {
	data []byte
	n    int
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := copy(p[:min(len(p), r.n)], r.data)
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

var errBodyFailed = errors.New("storetest: body failed on purpose")

func testFailingBody(t *testing.T, s store.Store) {
	const full = 1 << 20
	for i, after := range []int{0, 1, 4096, 300 << 10, full - 1} {
		for _, declared := range []int64{full, -1} {
			for _, ifAbsent := range []bool{false, true} {
				name := fmt.Sprintf("after-%d/size-%d/ifabsent-%t", after, declared, ifAbsent)
				t.Run(name, func(t *testing.T) {
					opts := store.PutOptions{IfAbsent: ifAbsent}
					body := func() io.Reader {
						return &failingReader{data: payload(uint64(i), full), n: after, err: errBodyFailed}
					}
					fresh := "fb/new/k"
					if err := s.Put(t.Context(), fresh, body(), declared, opts); err == nil {
						t.Fatal("Put with a failing body returned nil")
					}
					checkAbsent(t, s, fresh)

					if ifAbsent {
						return // IfAbsent on an existing key fails before the body matters.
					}
					old := "fb/old/k"
					oldData := payload(uint64(50+i), 1000)
					mustPut(t, s, old, oldData)
					if err := s.Put(t.Context(), old, body(), declared, opts); err == nil {
						t.Fatal("overwriting Put with a failing body returned nil")
					}
					checkObject(t, s, old, oldData)
				})
			}
		}
	}
}

// cancelingReader cancels its context after n bytes and keeps yielding
// data, as a client body does while the server's request context ends.
type cancelingReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	k, err := c.r.Read(p[:min(len(p), max(c.n, 1<<10))])
	c.n -= k
	return k, err
}

func testCancel(t *testing.T, s store.Store) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	t.Run("PutBefore", func(t *testing.T) {
		for _, ifAbsent := range []bool{false, true} {
			err := put(cancelled, s, "cx/put-before", payload(1, 100), store.PutOptions{IfAbsent: ifAbsent})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put (IfAbsent=%t) with a cancelled context: err = %v, want context.Canceled", ifAbsent, err)
			}
			checkAbsent(t, s, "cx/put-before")
		}
	})
	t.Run("PutMidStream", func(t *testing.T) {
		const size = 2 << 20
		for i, key := range []string{"cx/mid/new", "cx/mid/old"} {
			var old []byte
			if i == 1 {
				old = payload(7, 500)
				mustPut(t, s, key, old)
			}
			ctx, cancel := context.WithCancel(t.Context())
			body := &cancelingReader{r: opaque(payload(3, size)), n: 64 << 10, cancel: cancel}
			err := s.Put(ctx, key, body, size, store.PutOptions{})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put whose context is cancelled mid-body: err = %v, want context.Canceled", err)
			}
			if old == nil {
				checkAbsent(t, s, key)
			} else {
				checkObject(t, s, key, old)
			}
		}
	})
	t.Run("Get", func(t *testing.T) {
		mustPut(t, s, "cx/get", payload(4, 1<<20))
		// A backend may fail at Get or at the first Read (a lazy HTTP GET).
		_, err := get(cancelled, s, "cx/get")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Get with a cancelled context: err = %v, want context.Canceled", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		for i := range 5 {
			mustPut(t, s, fmt.Sprintf("cx/list/%d", i), nil)
		}
		checkListCancelled(t, s, cancelled, 0)
		// Cancelled between keys: the next step must notice.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		n, gotErr := 0, false
		for k, err := range s.List(ctx, "cx/list/") {
			if gotErr {
				t.Fatalf("List yielded (%q, %v) after an error", k, err)
			}
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("List cancelled after the first key: err = %v, want context.Canceled", err)
				}
				gotErr = true
				continue
			}
			n++
			cancel()
		}
		if !gotErr || n != 1 {
			t.Fatalf("List cancelled after the first key yielded %d keys and error=%t; want 1 key, then context.Canceled", n, gotErr)
		}
	})
}

// checkListCancelled fails t unless List with the cancelled ctx yields at
// most maxKeys keys and then an error wrapping context.Canceled, and
// nothing after it.
func checkListCancelled(t *testing.T, s store.Store, ctx context.Context, maxKeys int) {
	t.Helper()
	n, gotErr := 0, false
	for k, err := range s.List(ctx, "") {
		if gotErr {
			t.Fatalf("List yielded (%q, %v) after an error", k, err)
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("List with a cancelled context: err = %v, want context.Canceled", err)
			}
			gotErr = true
			continue
		}
		n++
	}
	if !gotErr || n > maxKeys {
		t.Fatalf("List with a cancelled context yielded %d keys and error=%t; want at most %d keys, then context.Canceled", n, gotErr, maxKeys)
	}
}

func testAtomicOverwrite(t *testing.T, s store.Store) {
	const key = "atomic/obj"
	const size = 256 << 10
	a, b := bytes.Repeat([]byte{'A'}, size), bytes.Repeat([]byte{'B'}, size)
	mustPut(t, s, key, a)

	// A reader opened before an overwrite sees one whole version.
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, key, b)
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("reading an object overwritten after Get: %v", err)
	}
	if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
		t.Fatalf("a reader opened before an overwrite saw %d bytes mixing both versions", len(got))
	}

	// Readers racing a writer never see a mix or a truncated object.
	const rounds = 20
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		defer close(done)
		for i := range rounds {
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := put(t.Context(), s, key, data, store.PutOptions{}); err != nil {
				errs <- fmt.Errorf("overwriting Put: %w", err)
				return
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := get(t.Context(), s, key)
				if err != nil {
					errs <- fmt.Errorf("reading during overwrites: %w", err)
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					errs <- fmt.Errorf("reading during overwrites returned %d bytes that are neither version", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
