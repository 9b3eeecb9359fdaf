package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// maxHungCalls bounds the store calls left running in the background
// because the store ignored their context.
const maxHungCalls = 4

// errStoreHung: the store has left maxHungCalls calls unanswered.
var errStoreHung = errors.New("audit: the store has not answered earlier calls")

// boundedStore is the appender's view of its store: a Put, Get or Delete
// returns when its context ends even if the store does not answer (a hung
// mount, a black-holed connection without timeouts). The call goes on in
// the background with its own copy of the body and closes whatever it
// gets late; while maxHungCalls of those are outstanding, calls fail at
// once instead of piling up more goroutines. Listings are passed through
// (scan is a bounded one), and so is the store's clock (store.Clock),
// bounded like a Get.
type boundedStore struct {
	store.Store
	hung atomic.Int32 // calls given up on and still running
}

// detach runs f in the background, returning its error, or ctx's when ctx
// ends first; then late is called once f returns.
func (b *boundedStore) detach(ctx context.Context, f func() error, late func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.hung.Load() >= maxHungCalls {
		return errStoreHung
	}
	const (
		waiting = iota
		answered
		abandoned
	)
	var mu sync.Mutex
	state := waiting
	done := make(chan error, 1)
	go func() {
		err := f()
		mu.Lock()
		if state == abandoned {
			mu.Unlock()
			b.hung.Add(-1)
			if late != nil {
				late()
			}
			return
		}
		state = answered
		mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	mu.Lock()
	if state == answered {
		mu.Unlock()
		return <-done // it answered as we gave up: take the answer
	}
	state = abandoned
	b.hung.Add(1)
	mu.Unlock()
	return fmt.Errorf("store did not answer: %w", ctx.Err())
}

func (b *boundedStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	// The appender's objects are small (batches, checkpoints, leases): a
	// copy lets a call left running outlive the caller's buffer.
	r := body
	if size >= 0 {
		r = io.LimitReader(body, size+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return b.detach(ctx, func() error {
		return b.Store.Put(ctx, key, bytes.NewReader(data), size, opts)
	}, nil)
}

func (b *boundedStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := b.detach(ctx, func() error {
		var err error
		rc, err = b.Store.Get(ctx, key)
		return err
	}, func() {
		if rc != nil {
			rc.Close()
		}
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

func (b *boundedStore) Delete(ctx context.Context, key string) error {
	return b.detach(ctx, func() error { return b.Store.Delete(ctx, key) }, nil)
}

// clockTimeout bounds one reading of the store's clock.
const clockTimeout = 2 * time.Second

// clockTime passes store.Clock on, bounded like the other calls: has is
// false when the store tells no time of its own.
func (b *boundedStore) clockTime(ctx context.Context) (t time.Time, has bool, err error) {
	c, ok := b.Store.(store.Clock)
	if !ok {
		return time.Time{}, false, nil
	}
	// A clock answers from memory or one small request: a store that takes
	// longer tells nothing useful about the time.
	ctx, cancel := context.WithTimeout(ctx, clockTimeout)
	defer cancel()
	var got time.Time
	err = b.detach(ctx, func() error {
		t, err := c.Time(ctx)
		got = t
		return err
	}, nil)
	if err != nil {
		return time.Time{}, true, err
	}
	return got, true, nil
}

// scan lists prefix, calling fn with each key until it returns false, and
// returns when ctx ends even if the store's listing does not: fn runs on
// the listing's goroutine, so it must only touch what the caller reads
// after scan returned nil.
func (b *boundedStore) scan(ctx context.Context, prefix string, fn func(key string) bool) error {
	return b.detach(ctx, func() error {
		for k, err := range b.Store.List(ctx, prefix) {
			if err != nil {
				return err
			}
			if !fn(k) {
				return nil
			}
		}
		return nil
	}, nil)
}
