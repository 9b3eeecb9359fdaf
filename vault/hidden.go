package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/idvault/idvault/vault/store"
)

// hiddenStore reads through delete markers when asked to. On a versioned
// bucket (store.HiddenReader) a delete without a version ID hides an
// object, even an object-locked one, from readers of current objects: the
// state chain and the audit logs would look cut back. The chain and the
// log view read through hiddenStore; it falls back to the newest hidden
// version only while recovering (reading at Open, and when a gap or a
// witness record says something is missing), since every fallback costs a
// listing of versions, and counts what it found that way.
type hiddenStore struct {
	store.Store
	hr    store.HiddenReader // nil: the store keeps no versions
	on    atomic.Bool
	found atomic.Int64
}

func newHiddenStore(st store.Store) *hiddenStore {
	h := &hiddenStore{Store: st}
	h.hr, _ = storeOf(st).(store.HiddenReader) // through the checked wrapper
	return h
}

func (h *hiddenStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := h.Store.Get(ctx, key)
	if h.hr == nil || !h.on.Load() || !errors.Is(err, store.ErrNotFound) {
		return rc, err
	}
	rc, herr := h.hr.GetHidden(ctx, key)
	if herr != nil {
		return nil, err
	}
	h.found.Add(1)
	return rc, nil
}

// recovering runs fn with the fallback on, and returns how many objects it
// read from behind a delete marker.
func (h *hiddenStore) recovering(fn func()) int64 {
	if h.hr == nil {
		fn()
		return 0
	}
	before := h.found.Load()
	h.on.Store(true)
	defer h.on.Store(false)
	fn()
	return h.found.Load() - before
}

// hiddenUnder reports whether any key under prefix is hidden behind a
// delete marker (false on a store without versions).
func (h *hiddenStore) hiddenUnder(ctx context.Context, prefix string) (bool, error) {
	if h.hr == nil {
		return false, nil
	}
	for _, err := range h.hr.Hidden(ctx, prefix) {
		return err == nil, err
	}
	return false, nil
}

// ctxLock is a mutex whose lock gives up when its context ends: the state
// chain and the log view hold theirs across store calls, and a request must
// not wait past its deadline behind a background read of a hung store.
type ctxLock chan struct{}

func newCtxLock() ctxLock { return make(chan struct{}, 1) }

// lock waits for the lock, which a store read in progress holds; a
// caller whose context ends first was held up by the store, so the error
// says so (ErrStoreUnavailable) as well as why it stopped (ctx.Err()).
func (l ctxLock) lock(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a store read in progress: %w: %w", ErrStoreUnavailable, ctx.Err())
	}
}

func (l ctxLock) unlock() { <-l }
