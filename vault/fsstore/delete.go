package fsstore

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/idvault/idvault/vault/store"
)

// Delete implements store.Store. It fails with store.ErrRetained before
// the key's RetainUntil date (see the package doc), removes the file,
// fsyncs its directory and removes the directories left empty.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.keyPath(s.dir, key)
	if err != nil {
		return fmt.Errorf("fsstore: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsstore: delete %q: %w", key, err)
	}
	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()

	now := s.now()
	ret, rerr := s.readRetention(key)
	fi, err := os.Lstat(p)
	if notExist(err) || err == nil && !fi.Mode().IsRegular() {
		// Absent (or only the directory of other keys): nothing to do but
		// drop a sidecar whose date has passed.
		if rerr == nil && ret.present && !ret.until.After(now) {
			s.removeRetention(key)
		}
		return nil
	}
	if err != nil {
		return fsErr("delete", key, err)
	}
	if rerr != nil {
		return fmt.Errorf("fsstore: delete: %w", rerr) // fail closed
	}
	if ret.present && ret.until.After(now) {
		return fmt.Errorf("fsstore: delete %q: %w", key, store.ErrRetained)
	}
	if err := os.Remove(p); err != nil && !notExist(err) {
		return fsErr("delete", key, err)
	}
	// Deleting a key record shreds its object: make the removal durable.
	if err := syncDir(filepath.Dir(p)); err != nil && !notExist(err) {
		return fsErr("delete", key, err)
	}
	if ret.present {
		s.removeRetention(key)
	}
	prune(s.dir, key)
	return nil
}

// prune removes the directories of key under root that are empty, from
// the deepest up, stopping at the first that is not. rmdir(2) never
// removes a file, so a key that replaced a directory meanwhile is safe;
// a Put that loses its directory to a prune retries (see place).
func prune(root, key string) {
	for d := path.Dir(key); d != "."; d = path.Dir(d) {
		if err := syscall.Rmdir(filepath.Join(root, filepath.FromSlash(d))); err != nil {
			return
		}
	}
}
