package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"syscall"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// checkedStore is the vault's view of a store.Store: every error a call
// returns that is not one of the store's own answers (ErrNotFound,
// ErrExists, ErrRetained, ...) says what happened in the vault's terms, so
// that errors.Is finds it however deep the vault wraps it: a full disk is
// ErrStoreFull, anything else (connection refused or reset, a server that
// stopped answering before the call's deadline, a server error) is
// ErrStoreUnavailable. A call cancelled by its caller keeps its
// context.Canceled alone: the store was not at fault.
//
// It passes the optional interfaces of the store contract through
// (store.ExpiryTagger, store.Clock) exactly when the store implements them,
// and is used for every store the vault, its audit log and its default
// limiter talk to.
type checkedStore struct {
	st store.Store
}

func checkStore(st store.Store) store.Store {
	if st == nil {
		return nil
	}
	if _, ok := st.(interface{ checked() *checkedStore }); ok {
		return st
	}
	c := &checkedStore{st}
	_, tagger := st.(store.ExpiryTagger)
	_, clock := st.(store.Clock)
	switch {
	case tagger && clock:
		return checkedTaggerClock{c}
	case tagger:
		return checkedTagger{c}
	case clock:
		return checkedClock{c}
	}
	return c
}

func (c *checkedStore) checked() *checkedStore { return c }

// storeOf returns the store a checkedStore wraps (for the optional
// interfaces Open asks about).
func storeOf(st store.Store) store.Store {
	if c, ok := st.(interface{ checked() *checkedStore }); ok {
		return c.checked().st
	}
	return st
}

func (c *checkedStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	return storeErr(ctx, c.st.Put(ctx, key, body, size, opts))
}

func (c *checkedStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.st.Get(ctx, key)
	return rc, storeErr(ctx, err)
}

func (c *checkedStore) Delete(ctx context.Context, key string) error {
	return storeErr(ctx, c.st.Delete(ctx, key))
}

func (c *checkedStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for k, err := range c.st.List(ctx, prefix) {
			if !yield(k, storeErr(ctx, err)) {
				return
			}
		}
	}
}

type checkedTagger struct{ *checkedStore }

func (c checkedTagger) SetExpirable(ctx context.Context, key string, expirable bool) error {
	return c.setExpirable(ctx, key, expirable)
}

type checkedClock struct{ *checkedStore }

func (c checkedClock) Time(ctx context.Context) (time.Time, error) { return c.time(ctx) }

type checkedTaggerClock struct{ *checkedStore }

func (c checkedTaggerClock) SetExpirable(ctx context.Context, key string, expirable bool) error {
	return c.setExpirable(ctx, key, expirable)
}

func (c checkedTaggerClock) Time(ctx context.Context) (time.Time, error) { return c.time(ctx) }

func (c *checkedStore) setExpirable(ctx context.Context, key string, expirable bool) error {
	return storeErr(ctx, c.st.(store.ExpiryTagger).SetExpirable(ctx, key, expirable))
}

func (c *checkedStore) time(ctx context.Context) (time.Time, error) {
	t, err := c.st.(store.Clock).Time(ctx)
	return t, storeErr(ctx, err)
}

// storeErr classifies err, the answer of a store call made with ctx.
func storeErr(ctx context.Context, err error) error {
	switch {
	case err == nil, isStoreAnswer(err), errors.Is(err, ErrStoreUnavailable):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", ErrStoreFull, err)
	case errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled):
		// The caller (or the vault itself, stopping a sibling write that
		// can no longer matter) gave up: nothing is known of the store.
		return err
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// isStoreAnswer: the store answered, with one of its contract's errors.
func isStoreAnswer(err error) bool {
	for _, s := range []error{store.ErrNotFound, store.ErrExists, store.ErrInvalidKey, store.ErrRetained,
		store.ErrSizeMismatch, store.ErrRetentionUnsupported} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
