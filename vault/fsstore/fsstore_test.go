package fsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t testing.TB, s *Store, key, data string, opts store.PutOptions) error {
	t.Helper()
	return s.Put(context.Background(), key, strings.NewReader(data), int64(len(data)), opts)
}

func mustPut(t testing.TB, s *Store, key, data string, opts store.PutOptions) {
	t.Helper()
	if err := put(t, s, key, data, opts); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(t testing.TB, s *Store, key string) (string, error) {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func mustRead(t testing.TB, s *Store, key, want string) {
	t.Helper()
	got, err := read(t, s, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func listAll(t testing.TB, s *Store, prefix string) []string {
	t.Helper()
	var keys []string
	for k, err := range s.List(context.Background(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, k)
	}
	return keys
}

// tree returns every path under dir (relative, slash-separated, with a
// trailing '/' on directories), sorted.
func tree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRetentionExpiresWithClock(t *testing.T) {
	clock := memstore.ClockAt(time.Date(2026, 4, 20, 12, 0, 0, 0, time.UTC))
	s, err := OpenWithOptions(t.TempDir(), Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	until := clock.Now().Add(72 * time.Hour)
	mustPut(t, s, "audit/log1/000001", "batch", store.PutOptions{IfAbsent: true, RetainUntil: until})
	mustPut(t, s, "audit/log1/000002", "batch2", store.PutOptions{RetainUntil: until})

	for _, d := range []time.Duration{0, time.Hour, 72*time.Hour - time.Nanosecond - time.Hour} {
		clock.Advance(d)
		for _, key := range []string{"audit/log1/000001", "audit/log1/000002"} {
			if err := s.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("Delete %v before the date: err = %v, want store.ErrRetained", until.Sub(clock.Now()), err)
			}
			if err := put(t, s, key, "edit", store.PutOptions{}); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("overwrite %v before the date: err = %v, want store.ErrRetained", until.Sub(clock.Now()), err)
			}
		}
	}
	// A second Store on the same directory (another process) sees it too.
	other, err := OpenWithOptions(s.Dir(), Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(t.Context(), "audit/log1/000001"); !errors.Is(err, store.ErrRetained) {
		t.Fatalf("Delete through a second Store: err = %v, want store.ErrRetained", err)
	}

	clock.Advance(time.Nanosecond) // now == until: retention is over
	mustPut(t, s, "audit/log1/000002", "rewritten", store.PutOptions{})
	mustRead(t, s, "audit/log1/000002", "rewritten")
	if err := s.Delete(t.Context(), "audit/log1/000002"); err != nil {
		t.Fatalf("Delete of a rewritten, unretained object: %v", err)
	}
	if err := s.Delete(t.Context(), "audit/log1/000001"); err != nil {
		t.Fatalf("Delete at the retention date: %v", err)
	}
	if got := tree(t, s.Dir()); !slices.Equal(got, []string{".retain/", ".tmp/"}) {
		t.Fatalf("after deleting every object the directory holds %q", got)
	}
}

func TestRetentionRecordFailsClosed(t *testing.T) {
	s := open(t)
	mustPut(t, s, "k/obj", "data", store.PutOptions{})
	if err := os.MkdirAll(filepath.Join(s.Dir(), ".retain", "k"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "garbage", retentionMagic + "2026-13-01T00:00:00Z\n", string(formatRetention(time.Now()))[:20]} {
		if err := os.WriteFile(filepath.Join(s.Dir(), ".retain", "k", "obj"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(t.Context(), "k/obj"); !errors.Is(err, ErrCorruptRetention) {
			t.Fatalf("Delete with a corrupt sidecar: err = %v, want ErrCorruptRetention", err)
		}
		if err := put(t, s, "k/obj", "new", store.PutOptions{}); !errors.Is(err, ErrCorruptRetention) {
			t.Fatalf("overwrite with a corrupt sidecar: err = %v, want ErrCorruptRetention", err)
		}
		mustRead(t, s, "k/obj", "data")
	}
	// Without its object, a corrupt sidecar is a crash leftover: replaced.
	mustPut(t, s, "k/fresh", "x", store.PutOptions{})
	if err := os.WriteFile(filepath.Join(s.Dir(), ".retain", "k", "fresh"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), "k", "fresh")); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k/fresh", "y", store.PutOptions{IfAbsent: true})
	if err := s.Delete(t.Context(), "k/fresh"); err != nil {
		t.Fatalf("Delete after a stale corrupt sidecar was replaced: %v", err)
	}
}

// TestRetentionRestoredWhenLinkLoses makes another writer win the race
// between the existence check and link(2): the loser must put back the
// sidecar it replaced, so the winner's object keeps its own retention.
func TestRetentionRestoredWhenLinkLoses(t *testing.T) {
	clock := memstore.ClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tt := range []struct {
		name    string
		sidecar []byte // the winner's sidecar, nil for none
	}{
		{"none", nil},
		{"expired", formatRetention(clock.Now().Add(-time.Hour))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenWithOptions(t.TempDir(), Options{Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			side := filepath.Join(s.Dir(), ".retain", "r", "k")
			testHookBeforePlace = func(key string) {
				// The other process: its object appears, with its sidecar.
				if err := os.MkdirAll(filepath.Join(s.Dir(), "r"), 0o700); err != nil {
					t.Error(err)
				}
				if err := os.WriteFile(filepath.Join(s.Dir(), "r", "k"), []byte("winner"), 0o600); err != nil {
					t.Error(err)
				}
				if tt.sidecar != nil {
					os.MkdirAll(filepath.Dir(side), 0o700)
					if err := os.WriteFile(side, tt.sidecar, 0o600); err != nil {
						t.Error(err)
					}
				}
			}
			defer func() { testHookBeforePlace = nil }()
			err = put(t, s, "r/k", "loser", store.PutOptions{IfAbsent: true, RetainUntil: clock.Now().Add(time.Hour)})
			testHookBeforePlace = nil
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("losing IfAbsent Put: err = %v, want store.ErrExists", err)
			}
			mustRead(t, s, "r/k", "winner")
			got, err := os.ReadFile(side)
			if tt.sidecar == nil {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("the loser left a sidecar (err = %v)", err)
				}
			} else if !bytes.Equal(got, tt.sidecar) {
				t.Fatalf("the winner's sidecar was not restored: %q", got)
			}
			if err := s.Delete(t.Context(), "r/k"); err != nil {
				t.Fatalf("Delete of the unretained winner: %v", err)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "new", "store")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "blobs/ab/cd", "x", store.PutOptions{})
	mustPut(t, s, "keys/ab", "y", store.PutOptions{IfAbsent: true, RetainUntil: time.Now().Add(time.Hour)})
	for _, rel := range tree(t, dir) {
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700 | fs.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", rel, fi.Mode(), want)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory has mode %v, want 0700", fi.Mode().Perm())
	}
}

// TestNothingLeftBehind checks that failed writes leave no temporary file,
// no sidecar and no directory.
func TestNothingLeftBehind(t *testing.T) {
	s := open(t)
	mustPut(t, s, "exists", "x", store.PutOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	until := time.Now().Add(time.Hour)
	failures := []func() error{
		func() error { return s.Put(t.Context(), "a/b/short", strings.NewReader("abc"), 4, store.PutOptions{}) },
		func() error { return s.Put(t.Context(), "a/b/long", strings.NewReader("abcde"), 4, store.PutOptions{}) },
		func() error {
			return s.Put(t.Context(), "a/b/fail", io.MultiReader(strings.NewReader("ab"), iotestErrReader{}), -1, store.PutOptions{RetainUntil: until})
		},
		func() error { return s.Put(ctx, "a/b/cancel", strings.NewReader("abc"), 3, store.PutOptions{}) },
		func() error { return put(t, s, "exists", "y", store.PutOptions{IfAbsent: true, RetainUntil: until}) },
		func() error { return put(t, s, "exists/below", "y", store.PutOptions{RetainUntil: until}) },
		func() error { return put(t, s, strings.Repeat("s", 256), "y", store.PutOptions{}) },
	}
	for i, f := range failures {
		if err := f(); err == nil {
			t.Fatalf("failure %d returned nil", i)
		}
	}
	if got := tree(t, s.Dir()); !slices.Equal(got, []string{".retain/", ".tmp/", "exists"}) {
		t.Fatalf("after failed writes the directory holds %q", got)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("body failed") }

func TestDeletePrunesEmptyDirectories(t *testing.T) {
	s := open(t)
	for _, k := range []string{"index/expiry/2026042012/id1", "index/expiry/2026042012/id2", "index/expiry/2026042013/id3", "index/subject/h/id1"} {
		mustPut(t, s, k, "", store.PutOptions{})
	}
	del := func(key string) {
		t.Helper()
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	del("index/expiry/2026042012/id1")
	del("index/expiry/2026042012/id2")
	want := []string{".retain/", ".tmp/", "index/", "index/expiry/", "index/expiry/2026042013/", "index/expiry/2026042013/id3",
		"index/subject/", "index/subject/h/", "index/subject/h/id1"}
	if got := tree(t, s.Dir()); !slices.Equal(got, want) {
		t.Fatalf("after emptying one hour the directory holds\n%q\nwant\n%q", got, want)
	}
	del("index/expiry/2026042013/id3")
	del("index/subject/h/id1")
	if got := tree(t, s.Dir()); !slices.Equal(got, []string{".retain/", ".tmp/"}) {
		t.Fatalf("after deleting every key the directory holds %q", got)
	}
	// Deleting a "directory" name removes nothing, even an empty directory
	// that pruning has not reached.
	if err := os.MkdirAll(filepath.Join(s.Dir(), "empty", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	del("empty/dir")
	if _, err := os.Stat(filepath.Join(s.Dir(), "empty", "dir")); err != nil {
		t.Fatalf("Delete of a directory name removed it: %v", err)
	}
}

// TestPutRetriesAfterPrune removes the directory a Put is about to rename
// into, as a concurrent Delete pruning it would.
func TestPutRetriesAfterPrune(t *testing.T) {
	s := open(t)
	mustPut(t, s, "p/q/other", "o", store.PutOptions{})
	for _, opts := range []store.PutOptions{{}, {IfAbsent: true}, {RetainUntil: time.Now().Add(time.Hour)}} {
		removals := 0
		testHookBeforePlace = func(string) {
			if removals < 3 { // more than once: a retry may lose again
				removals++
				if err := os.RemoveAll(filepath.Join(s.Dir(), "p")); err != nil {
					t.Error(err)
				}
			}
		}
		key := fmt.Sprintf("p/q/k-%t-%t", opts.IfAbsent, !opts.RetainUntil.IsZero())
		err := put(t, s, key, "v", opts)
		testHookBeforePlace = nil
		if err != nil {
			t.Fatalf("Put(%+v) whose directory was pruned: %v", opts, err)
		}
		mustRead(t, s, key, "v")
	}
}

// TestPutSurvivesConcurrentPrune races real Deletes, which prune the
// directories that Puts of other keys are writing into.
func TestPutSurvivesConcurrentPrune(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 40 {
				key := fmt.Sprintf("hour/%d/w%d", i%2, w)
				if err := put(t, s, key, "x", store.PutOptions{IfAbsent: w%2 == 0}); err != nil {
					t.Errorf("Put(%q) racing prunes: %v", key, err)
					return
				}
				if err := s.Delete(t.Context(), key); err != nil {
					t.Errorf("Delete(%q): %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := tree(t, s.Dir()); !slices.Equal(got, []string{".retain/", ".tmp/"}) {
		t.Fatalf("the directory holds %q", got)
	}
}

// TestListIsLazy counts the directories List reads before its first key:
// only those on the path to that key.
func TestListIsLazy(t *testing.T) {
	s := open(t)
	for i := range 30 {
		for j := range 3 {
			mustPut(t, s, fmt.Sprintf("blobs/%02d/%d", i, j), "", store.PutOptions{})
		}
	}
	var mu sync.Mutex
	var reads []string
	testHookReadDir = func(rel string) {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, rel)
	}
	defer func() { testHookReadDir = nil }()
	for k, err := range s.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if k != "blobs/00/0" {
			t.Fatalf("first key %q", k)
		}
		break
	}
	if want := []string{"", "blobs/", "blobs/00/"}; !slices.Equal(reads, want) {
		t.Fatalf("before its first key List read directories %q, want %q", reads, want)
	}
	reads = nil
	for range s.List(t.Context(), "blobs/1") {
		break
	}
	if want := []string{"blobs/", "blobs/10/"}; !slices.Equal(reads, want) {
		t.Fatalf("List(\"blobs/1\") read directories %q, want %q", reads, want)
	}
}

// TestListSkipsForeignFiles puts into the directory what a crash, an
// editor or an operator might leave there: none of it is a key.
func TestListSkipsForeignFiles(t *testing.T) {
	s := open(t)
	mustPut(t, s, "a/key", "x", store.PutOptions{})
	mustPut(t, s, "b", "x", store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	dir := s.Dir()
	write := func(rel string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{".tmp/put-123", ".hidden", "a/.DS_Store", "a/.git/config", "a/with space", "a/ü", "c/.x/y", "a/key~"} {
		write(rel)
	}
	if err := os.Symlink(filepath.Join(dir, "a", "key"), filepath.Join(dir, "a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, ""); !slices.Equal(got, []string{"a/key", "b"}) {
		t.Fatalf("List(\"\") = %q, want [a/key b]", got)
	}
}

func TestKeyConflict(t *testing.T) {
	s := open(t)
	mustPut(t, s, "file", "x", store.PutOptions{})
	mustPut(t, s, "dir/child", "y", store.PutOptions{})
	for _, tt := range []struct {
		key  string
		opts store.PutOptions
	}{
		{"file/below", store.PutOptions{}},
		{"file/below/deeper", store.PutOptions{IfAbsent: true}},
		{"dir", store.PutOptions{}},
		{"dir", store.PutOptions{IfAbsent: true}},
	} {
		if err := put(t, s, tt.key, "z", tt.opts); !errors.Is(err, ErrKeyConflict) {
			t.Errorf("Put(%q, IfAbsent=%t): err = %v, want ErrKeyConflict", tt.key, tt.opts.IfAbsent, err)
		}
	}
	mustRead(t, s, "file", "x")
	mustRead(t, s, "dir/child", "y")
	if _, err := read(t, s, "file/below"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get below a file: err = %v, want store.ErrNotFound", err)
	}
	if got := listAll(t, s, "file/"); len(got) != 0 {
		t.Errorf("List(\"file/\") = %q", got)
	}
}

func TestLongSegmentRefused(t *testing.T) {
	s := open(t)
	key := "a/" + strings.Repeat("s", maxSegment+1)
	if err := put(t, s, key, "x", store.PutOptions{}); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("Put of a 256-byte segment: err = %v, want store.ErrInvalidKey", err)
	}
	if _, err := read(t, s, key); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("Get of a 256-byte segment: err = %v, want store.ErrInvalidKey", err)
	}
	if err := s.Delete(t.Context(), key); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("Delete of a 256-byte segment: err = %v, want store.ErrInvalidKey", err)
	}
	if got := listAll(t, s, strings.Repeat("s", 300)+"/"); len(got) != 0 {
		t.Fatalf("List of an impossible directory yields %q", got)
	}
}

func TestKeyPathStaysInside(t *testing.T) {
	s := open(t)
	for _, key := range []string{"../x", "a/../../x", "/etc/passwd", "..", "a/./b", ".tmp/x", ".retain/x"} {
		if p, err := s.keyPath(s.dir, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("keyPath(%q) = %q, %v; want store.ErrInvalidKey", key, p, err)
		}
	}
	p, err := s.keyPath(s.dir, "a/b")
	if err != nil || p != filepath.Join(s.dir, "a", "b") {
		t.Fatalf("keyPath(\"a/b\") = %q, %v", p, err)
	}
}

// TestErrorsNameKeysNotPaths provokes filesystem errors and checks that
// none shows the store's directory.
func TestErrorsNameKeysNotPaths(t *testing.T) {
	s := open(t)
	mustPut(t, s, "file", "x", store.PutOptions{})
	var errs []error
	errs = append(errs, put(t, s, "file/below", "y", store.PutOptions{}))
	// Break the private temporary directory: every Put now fails in it.
	if err := os.Remove(filepath.Join(s.Dir(), ".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), ".tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errs = append(errs, put(t, s, "new", "y", store.PutOptions{}))
	// A sidecar that is a directory cannot be read.
	if err := os.MkdirAll(filepath.Join(s.Dir(), ".retain", "file", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	errs = append(errs, s.Delete(t.Context(), "file"))
	for i, err := range errs {
		if err == nil {
			t.Fatalf("error %d is nil", i)
		}
		if strings.Contains(err.Error(), s.Dir()) {
			t.Errorf("error %d shows the store's directory: %v", i, err)
		}
	}
}

func TestGetReaderHonoursContext(t *testing.T) {
	s := open(t)
	mustPut(t, s, "k", strings.Repeat("x", 1<<20), store.PutOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: err = %v, want context.Canceled", err)
	}
}

func TestOpen(t *testing.T) {
	t.Run("RelativeDir", func(t *testing.T) {
		t.Chdir(t.TempDir())
		s, err := Open("rel/store")
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsAbs(s.Dir()) || !strings.HasSuffix(s.Dir(), filepath.Join("rel", "store")) {
			t.Fatalf("Dir() = %q, want an absolute path ending in rel/store", s.Dir())
		}
	})
	t.Run("NotADirectory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(f); err == nil {
			t.Fatal("Open of a file succeeded")
		}
		if _, err := Open(""); err == nil {
			t.Fatal("Open(\"\") succeeded")
		}
	})
	t.Run("RemovesStaleTemps", func(t *testing.T) {
		// A temp file two minutes old whose writer died goes at the next
		// Open (before: only after 24 h); a fresh one, and an old one whose
		// writer still holds its lock, stay.
		s := open(t)
		old, fresh, locked := filepath.Join(s.Dir(), ".tmp", "put-old"), filepath.Join(s.Dir(), ".tmp", "put-fresh"), filepath.Join(s.Dir(), ".tmp", "put-locked")
		for _, p := range []string{old, fresh, locked} {
			if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		past := time.Now().Add(-2 * time.Minute)
		for _, p := range []string{old, locked} {
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
		}
		// A live writer: its own open file, locked as writeTemp locks it.
		w, err := os.OpenFile(locked, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		lockTemp(w)
		if _, err := Open(s.Dir()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("an abandoned two-minute-old temporary file survived Open (err = %v)", err)
		}
		if _, err := os.Stat(fresh); err != nil {
			t.Errorf("Open removed a recent temporary file that a live Put may own: %v", err)
		}
		if _, err := os.Stat(locked); err != nil {
			t.Errorf("Open removed a temporary file a live writer holds: %v", err)
		}
	})
	t.Run("SparesLivePut", func(t *testing.T) {
		// A Put whose body stalls (its temp file's clock set back past
		// any grace period) survives an Open of the same directory.
		s := open(t)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- s.Put(context.Background(), "slow", pr, 8, store.PutOptions{}) }()
		if _, err := pw.Write([]byte("1234")); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(filepath.Join(s.Dir(), ".tmp"))
		if err != nil || len(ents) != 1 {
			t.Fatalf("temp dir: %v, %d entries", err, len(ents))
		}
		past := time.Now().Add(-25 * time.Hour)
		if err := os.Chtimes(filepath.Join(s.Dir(), ".tmp", ents[0].Name()), past, past); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(s.Dir()); err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write([]byte("5678")); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatalf("a live Put failed after a concurrent Open: %v", err)
		}
		mustRead(t, s, "slow", "12345678")
	})
}

func TestParseRetention(t *testing.T) {
	when := time.Date(2026, 4, 23, 1, 2, 3, 456, time.FixedZone("JST", 9*3600))
	enc := formatRetention(when)
	if got, err := parseRetention(enc); err != nil || !got.Equal(when) {
		t.Fatalf("parseRetention(formatRetention(t)) = %v, %v; want %v", got, err, when)
	}
	for _, tt := range []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"magic only", retentionMagic},
		{"no newline", strings.TrimSuffix(string(enc), "\n")},
		{"two newlines", string(enc) + "\n"},
		{"other version", strings.Replace(string(enc), "v1", "v2", 1)},
		{"not UTC", retentionMagic + "2026-04-23T01:02:03+09:00\n"},
		{"trailing zero", retentionMagic + "2026-04-23T01:02:03.10Z\n"},
		{"bad month", retentionMagic + "2026-13-23T01:02:03Z\n"},
		{"CRLF", strings.TrimSuffix(string(enc), "\n") + "\r\n"},
	} {
		if _, err := parseRetention([]byte(tt.in)); !errors.Is(err, ErrCorruptRetention) {
			t.Errorf("%s: err = %v, want ErrCorruptRetention", tt.name, err)
		}
	}
	// Truncation anywhere and any bit flip in the date is refused or
	// yields another valid canonical record, never a panic.
	for i := range len(enc) {
		if _, err := parseRetention(enc[:i]); !errors.Is(err, ErrCorruptRetention) {
			t.Errorf("truncated at %d: err = %v, want ErrCorruptRetention", i, err)
		}
		for bit := range 8 {
			b := bytes.Clone(enc)
			b[i] ^= 1 << bit
			if got, err := parseRetention(b); err == nil && got.Equal(when) {
				t.Errorf("flipping bit %d of byte %d kept the same date", bit, i)
			}
		}
	}
}

func FuzzParseRetention(f *testing.F) {
	f.Add(formatRetention(time.Date(2026, 4, 23, 1, 2, 3, 456, time.UTC)))
	f.Add(formatRetention(time.Time{}))
	f.Add([]byte(retentionMagic + "9999-12-31T23:59:59.999999999Z\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		when, err := parseRetention(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptRetention) {
				t.Fatalf("error does not wrap ErrCorruptRetention: %v", err)
			}
			return
		}
		// Only canonical encodings parse, so parse-then-format is the identity.
		if enc := formatRetention(when); !bytes.Equal(enc, b) {
			t.Fatalf("parse then format changed the record: %q -> %q", b, enc)
		}
	})
}
