package fsstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// Errors specific to the filesystem store, besides the store sentinels.
var (
	// ErrKeyConflict: Put of a key that is a directory of other keys ("a"
	// while "a/b" exists), or below a key that is an object ("a/b" while
	// "a" exists). A filesystem cannot hold both.
	ErrKeyConflict = errors.New("fsstore: key conflicts with another key's directory")
	// ErrCaseInsensitive: Open of a directory on a filesystem that folds
	// case, where distinct keys would share a file.
	ErrCaseInsensitive = errors.New("fsstore: filesystem is case-insensitive")
	// ErrCorruptRetention: a retention sidecar cannot be parsed. Delete and
	// overwrite of that key fail (closed) until an operator repairs it.
	ErrCorruptRetention = errors.New("fsstore: corrupt retention record")
)

const (
	tmpDirName    = ".tmp"    // temporary files, renamed or linked into place
	retainDirName = ".retain" // retention sidecars, one per retained key

	// maxSegment is the usual NAME_MAX: the longest file name.
	maxSegment = 255
	// placeAttempts bounds the retries of a rename or link whose directory
	// a concurrent Delete pruned.
	placeAttempts = 8
	// lockStripes is the number of in-process locks keys are hashed onto.
	lockStripes = 64
)

// Options configure a Store. The zero value is the default.
type Options struct {
	// Now is the clock against which RetainUntil dates are compared, and
	// what Time reports. Nil means time.Now for retention and the
	// filesystem's own time for Time; tests inject a clock to pass a
	// retention date without sleeping, or to move the storage's time along
	// with a vault's injected clock.
	Now func() time.Time
}

// Store is a store.Store on a local directory. It is safe for concurrent
// use by multiple goroutines; several processes may share its directory.
type Store struct {
	dir    string // absolute and clean
	tmp    string // dir/.tmp
	retain string // dir/.retain
	now    func() time.Time

	clockFixed bool    // Options.Now was set: Time reports it
	clock      fsClock // Time's last reading of the filesystem's time

	// locks make the retention check and the change it guards one step
	// among goroutines (see the package doc); IfAbsent does not rely on them.
	seed  maphash.Seed
	locks [lockStripes]sync.Mutex
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir with default options, creating dir (0700)
// if it does not exist.
func Open(dir string) (*Store, error) {
	return OpenWithOptions(dir, Options{})
}

// OpenWithOptions opens the store in dir, creating dir (0700) if it does
// not exist. It fails with ErrCaseInsensitive on a filesystem that folds
// case.
func OpenWithOptions(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fsstore: open: empty directory name")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fsstore: open: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("fsstore: open: %w", err)
	}
	s := &Store{
		dir:        abs,
		tmp:        filepath.Join(abs, tmpDirName),
		retain:     filepath.Join(abs, retainDirName),
		now:        opts.Now,
		clockFixed: opts.Now != nil,
		seed:       maphash.MakeSeed(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, d := range []string{s.tmp, s.retain} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("fsstore: open: %w", err)
		}
	}
	if err := s.checkCaseSensitive(); err != nil {
		return nil, err
	}
	s.removeStaleTemps()
	return s, nil
}

// Dir returns the absolute path of the store's directory.
func (s *Store) Dir() string { return s.dir }

// checkCaseSensitive creates a file in the private directory and looks it
// up under another case.
func (s *Store) checkCaseSensitive() error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	lower := filepath.Join(s.tmp, fmt.Sprintf("case-probe-%x", b))
	f, err := os.OpenFile(lower, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fsstore: open: case probe: %w", err)
	}
	f.Close()
	defer os.Remove(lower)
	_, err = os.Lstat(filepath.Join(s.tmp, strings.ToUpper(filepath.Base(lower))))
	switch {
	case err == nil:
		return fmt.Errorf("fsstore: open: %w", ErrCaseInsensitive)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("fsstore: open: case probe: %w", err)
	}
}

// removeStaleTemps removes temporary files a crashed writer left behind.
// A writer holds an exclusive flock(2) on its temporary file from creation
// until the file is placed or removed, so a file that can be locked, and is
// older than tempGrace (one minute; it covers the instant between creating
// and locking), belongs to no live writer in any process. Where flock is
// missing (not unix) only files older than 24 h are removed.
func (s *Store) removeStaleTemps() {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		if tempAbandoned(p, info.ModTime(), now) {
			os.Remove(p)
		}
	}
}

// keyPath validates key and maps it to its file under root (s.dir or
// s.retain). Every filesystem call on a key goes through it.
func (s *Store) keyPath(root, key string) (string, error) {
	if err := store.ValidKey(key); err != nil {
		return "", err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxSegment {
			return "", errors.Join(store.ErrInvalidKey, errors.New("key segment longer than 255 bytes"))
		}
	}
	p := filepath.Join(root, filepath.FromSlash(key))
	// Validation already rules out escapes; this guards the mapping itself.
	if !strings.HasPrefix(p, root+string(filepath.Separator)) {
		return "", errors.Join(store.ErrInvalidKey, errors.New("key maps outside the store"))
	}
	return p, nil
}

func (s *Store) lock(key string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, key)%lockStripes]
}

// fsErr wraps err from the os package for op on key. It drops the file
// path the os package puts in its errors (the store's directory is the
// caller's business, and the key says which object), keeping the errno so
// that errors.Is(err, fs.ErrNotExist) and the like still work.
func fsErr(op, key string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
	case errors.As(err, &le):
		err = fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return fmt.Errorf("fsstore: %s %q: %w", op, key, err)
}

// notExist reports whether err means that a path, or one of its parent
// directories, is missing (ENOTDIR: a parent is a file).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// syncDir fsyncs a directory so that entries created or removed in it
// survive a crash. Windows cannot open directories for syncing.
func syncDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
