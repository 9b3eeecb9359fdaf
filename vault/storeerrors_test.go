package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

// plainStore has the four methods of store.Store and nothing else.
type plainStore struct{ store.Store }

type tagStore struct{ store.Store }

func (tagStore) SetExpirable(context.Context, string, bool) error { return nil }

type clockStore struct{ store.Store }

func (clockStore) Time(context.Context) (time.Time, error) { return time.Unix(1, 0), nil }

type tagClockStore struct{ store.Store }

func (tagClockStore) SetExpirable(context.Context, string, bool) error { return nil }
func (tagClockStore) Time(context.Context) (time.Time, error)          { return time.Unix(1, 0), nil }

// TestCheckStorePassesOptionalInterfaces: the vault's view of a store
// implements store.ExpiryTagger and store.Clock exactly when the store
// does (the store contract asks a wrapping store to pass them on).
func TestCheckStorePassesOptionalInterfaces(t *testing.T) {
	base := plainStore{memstore.New()}
	for _, tc := range []struct {
		st            store.Store
		tagger, clock bool
	}{
		{base, false, false},
		{tagStore{base}, true, false},
		{clockStore{base}, false, true},
		{tagClockStore{base}, true, true},
	} {
		c := checkStore(tc.st)
		_, tagger := c.(store.ExpiryTagger)
		_, clock := c.(store.Clock)
		if tagger != tc.tagger || clock != tc.clock {
			t.Errorf("%T: ExpiryTagger %v, Clock %v; want %v, %v", tc.st, tagger, clock, tc.tagger, tc.clock)
		}
		if storeOf(c) != tc.st || checkStore(c) != c {
			t.Errorf("%T: not unwrapped, or wrapped twice", tc.st)
		}
	}
}

type failingStore struct {
	store.Store
	err error
}

func (f failingStore) Get(context.Context, string) (io.ReadCloser, error) { return nil, f.err }

// TestStoreErrClassified: what the store answers stays as it is; a full
// disk is ErrStoreFull (and ErrStoreUnavailable); anything else is
// ErrStoreUnavailable, the store's error still wrapped; a call its caller
// cancelled keeps context.Canceled alone.
func TestStoreErrClassified(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	for _, tc := range []struct {
		ctx               context.Context
		err               error
		unavailable, full bool
	}{
		{context.Background(), fmt.Errorf("s3: %w", store.ErrNotFound), false, false},
		{context.Background(), fmt.Errorf("s3: %w", store.ErrExists), false, false},
		{context.Background(), fmt.Errorf("fs: write: %w", syscall.ENOSPC), true, true},
		{context.Background(), fmt.Errorf("fs: write: %w", syscall.EDQUOT), true, true},
		{context.Background(), errors.New("dial tcp: connection refused"), true, false},
		{expired, fmt.Errorf("s3: get: %w", context.DeadlineExceeded), true, false},
		{cancelled, fmt.Errorf("s3: get: %w", context.Canceled), false, false},
	} {
		_, err := checkStore(failingStore{memstore.New(), tc.err}).Get(tc.ctx, "k")
		if !errors.Is(err, tc.err) || errors.Is(err, ErrStoreUnavailable) != tc.unavailable || errors.Is(err, ErrStoreFull) != tc.full {
			t.Errorf("%v: %v; want unavailable %v, full %v, and the store's error wrapped", tc.err, err, tc.unavailable, tc.full)
		}
	}
}
