package fsstore

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/idvault/idvault/vault/store"
)

// Get implements store.Store. The reader reads the object as it was when
// Get returned, even if it is overwritten or deleted meanwhile, and fails
// once ctx is done.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.keyPath(s.dir, key)
	if err != nil {
		return nil, fmt.Errorf("fsstore: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fsstore: get %q: %w", key, err)
	}
	f, err := os.Open(p)
	if notExist(err) {
		return nil, fmt.Errorf("fsstore: get %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fsErr("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fsErr("get", key, err)
	}
	if !fi.Mode().IsRegular() {
		// The directory of other keys ("a" while "a/b" exists).
		f.Close()
		return nil, fmt.Errorf("fsstore: get %q: %w", key, store.ErrNotFound)
	}
	return &objectReader{ctx: ctx, f: f, key: key}, nil
}

// objectReader is an open object. Its errors, like every error of the
// package, name the key and not the file's path.
type objectReader struct {
	ctx context.Context
	f   *os.File
	key string
}

func (r *objectReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("fsstore: read %q: %w", r.key, err)
	}
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = fsErr("read", r.key, err)
	}
	return n, err
}

func (r *objectReader) Close() error {
	if err := r.f.Close(); err != nil {
		return fsErr("close", r.key, err)
	}
	return nil
}
