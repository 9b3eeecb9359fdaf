// Package memstore is the in-memory store.Store and the manual clock
// behind vaulttest.Store and vaulttest.Clock, for unit tests of the logic
// above the Store interface. It is not a backend: every real backend is tested
// against the real thing (a directory, a MinIO server).
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/store"
)

type object struct {
	data        []byte
	retainUntil time.Time
	expirable   bool
}

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu   sync.Mutex
	objs map[string]object
	keys []string // sorted: List costs O(log n + matches), as a real store's does
	// Now is the clock used for RetainUntil; time.Now when nil.
	Now func() time.Time
}

// New returns an empty Store.
func New() *Store { return &Store{objs: make(map[string]object)} }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, body); err != nil {
		return fmt.Errorf("memstore: put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if size >= 0 && int64(buf.Len()) != size {
		return store.ErrSizeMismatch
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.objs[key]; ok {
		if opts.IfAbsent {
			return fmt.Errorf("memstore: put: %w", store.ErrExists)
		}
		if s.now().Before(old.retainUntil) {
			return fmt.Errorf("memstore: put: %w", store.ErrRetained)
		}
	}
	s.index(key)
	s.objs[key] = object{data: buf.Bytes(), retainUntil: opts.RetainUntil, expirable: opts.Expirable}
	return nil
}

// usable checks a call's key, then its context, before the call touches
// the objects.
func usable(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// SetExpirable implements store.ExpiryTagger. The mark has no effect here
// (nothing expires on its own); tests read it with Expirable.
func (s *Store) SetExpirable(ctx context.Context, key string, expirable bool) error {
	if err := usable(ctx, key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	if !ok {
		return fmt.Errorf("memstore: set expirable: %w", store.ErrNotFound)
	}
	o.expirable = expirable
	s.objs[key] = o
	return nil
}

// Expirable reports the expiry mark of key (PutOptions.Expirable, then
// SetExpirable), and whether key exists.
func (s *Store) Expirable(key string) (expirable, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	return o.expirable, ok
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := usable(ctx, key); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	if !ok {
		return nil, fmt.Errorf("memstore: get: %w", store.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := usable(ctx, key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objs[key]; ok && s.now().Before(o.retainUntil) {
		return fmt.Errorf("memstore: delete: %w", store.ErrRetained)
	}
	if _, ok := s.objs[key]; ok {
		i, _ := slices.BinarySearch(s.keys, key)
		s.keys = slices.Delete(s.keys, i, i+1)
	}
	delete(s.objs, key)
	return nil
}

// index adds key to the sorted keys if it is new; mu is held.
func (s *Store) index(key string) {
	if _, ok := s.objs[key]; ok {
		return
	}
	i, _ := slices.BinarySearch(s.keys, key)
	s.keys = slices.Insert(s.keys, i, key)
}

// List implements store.Store. It snapshots the matching keys at the call.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := store.ValidPrefix(prefix); err != nil {
			yield("", err)
			return
		}
		s.mu.Lock()
		var keys []string
		i, _ := slices.BinarySearch(s.keys, prefix)
		for ; i < len(s.keys) && strings.HasPrefix(s.keys[i], prefix); i++ {
			keys = append(keys, s.keys[i])
		}
		s.mu.Unlock()
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			if !yield(k, nil) {
				return
			}
		}
	}
}

// Bytes returns a copy of the object under key, for tests that tamper with
// or inspect what is stored; ok is false when absent.
func (s *Store) Bytes(key string) (b []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	return bytes.Clone(o.data), ok
}

// SetBytes replaces the object under key regardless of retention, as an
// attacker with direct storage access could.
func (s *Store) SetBytes(key string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index(key)
	o := s.objs[key]
	o.data = bytes.Clone(b)
	s.objs[key] = o
}

// Keys returns every key, sorted.
func (s *Store) Keys() []string {
	var out []string
	for k, err := range s.List(context.Background(), "") {
		if err == nil {
			out = append(out, k)
		}
	}
	return out
}

var _ store.Store = (*Store)(nil)

// Time implements store.Clock: the Store's Now (time.Now when nil), so a
// test that injects one clock into the Store and the vault keeps the two in
// agreement.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	return s.now(), nil
}

var _ store.Clock = (*Store)(nil)
