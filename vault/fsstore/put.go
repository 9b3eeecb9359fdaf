package fsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// copyBufSize is the chunk in which bodies are copied; the context is
// checked between chunks.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// testHookBeforePlace, when set by a test, runs after the body is on disk
// and before it is renamed or linked into place.
var testHookBeforePlace func(key string)

// Put implements store.Store. See the package doc for how the write is
// made atomic and durable.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	dst, err := s.keyPath(s.dir, key)
	if err != nil {
		return fmt.Errorf("fsstore: put: %w", err)
	}
	if size < -1 {
		return fmt.Errorf("fsstore: put %q: negative size: %w", key, store.ErrSizeMismatch)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	// Refuse early rather than read a body that cannot be stored; the link
	// below is what makes IfAbsent atomic.
	if opts.IfAbsent && s.isObject(dst) {
		return fmt.Errorf("fsstore: put %q: %w", key, store.ErrExists)
	}
	tf, err := s.writeTemp(ctx, key, body, size)
	if err != nil {
		return err
	}
	tmp := tf.Name()
	defer tf.Close()     // after the remove: the lock covers the file's whole life
	defer os.Remove(tmp) // gone after a rename; the spare name after a link

	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsstore: put %q: %w", key, err)
	}
	if testHookBeforePlace != nil {
		testHookBeforePlace(key)
	}

	now := s.now()
	exists := s.isObject(dst)
	if opts.IfAbsent && exists {
		return fmt.Errorf("fsstore: put %q: %w", key, store.ErrExists)
	}
	old, err := s.readRetention(key)
	if err != nil && (exists || !errors.Is(err, ErrCorruptRetention)) {
		return fmt.Errorf("fsstore: put: %w", err)
	}
	if exists && old.present && old.until.After(now) {
		return fmt.Errorf("fsstore: put %q: %w", key, store.ErrRetained)
	}

	retain := opts.RetainUntil.After(now)
	if retain {
		// The sidecar goes first, so the object is never visible unretained.
		until := opts.RetainUntil
		if exists && old.present && old.until.After(until) {
			until = old.until // a sidecar only ever extends retention
		}
		if err := s.writeRetention(key, until); err != nil {
			return err
		}
	}
	if err := s.place(tmp, s.dir, key, opts.IfAbsent); err != nil {
		if retain {
			s.restoreRetention(key, old)
		}
		return s.placeErr(key, dst, err)
	}
	if !retain && old.present {
		// Expired, or left by a crash before its object appeared.
		s.removeRetention(key)
	}
	return nil
}

// isObject reports whether p is a regular file (an object, not the
// directory of other keys).
func (s *Store) isObject(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

// writeTemp copies body into a new temporary file, checks its length and
// the context, fsyncs it and returns it, still open and locked (see
// removeStaleTemps); the caller removes, then closes it. On error nothing
// remains.
func (s *Store) writeTemp(ctx context.Context, key string, body io.Reader, size int64) (_ *os.File, err error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return nil, fsErr("put", key, err)
	}
	lockTemp(f)
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fsstore: put %q: %w", key, err)
		}
		chunk := buf
		if size >= 0 && size-n+1 < int64(len(chunk)) {
			chunk = chunk[:size-n+1] // one byte past size detects a long body
		}
		m, rerr := body.Read(chunk)
		if m > 0 {
			n += int64(m)
			if size >= 0 && n > size {
				return nil, fmt.Errorf("fsstore: put %q: body longer than %d bytes: %w", key, size, store.ErrSizeMismatch)
			}
			if _, err := f.Write(chunk[:m]); err != nil {
				return nil, fsErr("put", key, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("fsstore: put %q: reading body: %w", key, rerr)
		}
	}
	if size >= 0 && n != size {
		return nil, fmt.Errorf("fsstore: put %q: body of %d bytes, declared %d: %w", key, n, size, store.ErrSizeMismatch)
	}
	if err := f.Sync(); err != nil {
		return nil, fsErr("put", key, err)
	}
	return f, nil
}

// place makes the file tmp visible as rel under root: rename(2), or
// link(2) when exclusive, which fails with EEXIST if rel exists. Missing
// directories are created; a concurrent prune removing them makes it
// retry. The parent directory is fsynced.
func (s *Store) place(tmp, root, rel string, exclusive bool) error {
	dst := filepath.Join(root, filepath.FromSlash(rel))
	for attempt := 1; ; attempt++ {
		var err error
		if exclusive {
			err = os.Link(tmp, dst)
		} else {
			err = os.Rename(tmp, dst)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == placeAttempts {
			return err
		}
		if err := mkdirs(root, path.Dir(rel)); err != nil && (!errors.Is(err, fs.ErrNotExist) || attempt == placeAttempts) {
			return err
		}
	}
	return syncDir(filepath.Dir(dst))
}

// placeErr maps an error of place to the store's errors.
func (s *Store) placeErr(key, dst string, err error) error {
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EISDIR) {
		if fi, lerr := os.Lstat(dst); lerr == nil && fi.IsDir() {
			return fmt.Errorf("fsstore: put %q: %w", key, ErrKeyConflict)
		}
		return fmt.Errorf("fsstore: put %q: %w", key, store.ErrExists)
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("fsstore: put %q: %w", key, ErrKeyConflict)
	}
	return fsErr("put", key, err)
}

// mkdirs creates the directories of rel ("a/b" for key "a/b/c") under
// root, 0700, fsyncing the parent of each one it creates.
func mkdirs(root, rel string) error {
	if rel == "." {
		return nil
	}
	p := root
	for seg := range strings.SplitSeq(rel, "/") {
		parent := p
		p = filepath.Join(p, seg)
		err := os.Mkdir(p, 0o700)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			// A file here makes the next step fail with ENOTDIR.
		default:
			return err
		}
	}
	return nil
}

// writeFileAtomic writes data to rel under root through a temporary file,
// fsynced, then renamed into place.
func (s *Store) writeFileAtomic(root, rel string, data []byte) error {
	f, err := os.CreateTemp(s.tmp, "ret-*")
	if err != nil {
		return err
	}
	lockTemp(f)
	tmp := f.Name()
	defer f.Close()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return err
	}
	return s.place(tmp, root, rel, false)
}

// retention is what a key's sidecar says.
type retention struct {
	present bool
	until   time.Time
	raw     []byte // the sidecar's bytes, to restore it exactly
}
