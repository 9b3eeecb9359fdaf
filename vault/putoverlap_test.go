package vault

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

// indexOrderStore holds the subject index entry's write until the key
// record's write has started (or 2 s have passed: late), and records, for
// each of the two, whether the expiry entry was durable when it started.
type indexOrderStore struct {
	store.Store
	keyOnce     sync.Once
	keyStarted  chan struct{}
	late        atomic.Bool
	expiryDone  atomic.Bool
	beforeIndex atomic.Bool // a subject entry or key record started before the expiry entry was durable
}

func (s *indexOrderStore) Put(ctx context.Context, key string, r io.Reader, size int64, o store.PutOptions) error {
	switch {
	case strings.HasPrefix(key, "index/expiry/"):
		err := s.Store.Put(ctx, key, r, size, o)
		if err == nil {
			s.expiryDone.Store(true)
		}
		return err
	case strings.HasPrefix(key, "keys/"):
		if !s.expiryDone.Load() {
			s.beforeIndex.Store(true)
		}
		s.keyOnce.Do(func() { close(s.keyStarted) })
	case strings.HasPrefix(key, "index/subject/"):
		if !s.expiryDone.Load() {
			s.beforeIndex.Store(true)
		}
		select {
		case <-s.keyStarted:
		case <-time.After(2 * time.Second):
			s.late.Store(true)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Put(ctx, key, r, size, o)
}

// TestPutIndexesOverlapKeyRecord (issue 25): with a known size, the key
// record's write starts while the subject index entry's is still
// unanswered (they go at once, each once the expiry entry is durable, so
// Put waits for one small write less), and neither starts before the
// expiry entry is durable (what leads Sweep to both; the crash property
// itself is TestFaultFailedPutLeavesNothingSweepCannotFind). Before: the
// key record waited for the subject entry, which here waits for it: 2 s.
func TestPutIndexesOverlapKeyRecord(t *testing.T) {
	st := &indexOrderStore{Store: memstore.New(), keyStarted: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	img := image(64<<10, "")
	info := putImage(t, v, img, "m")
	if st.late.Load() {
		t.Fatal("the key record's write waited for the subject index entry's")
	}
	if st.beforeIndex.Load() {
		t.Fatal("a subject index entry or key record was written before the expiry index entry was durable")
	}
	got, err := redeemAll(v, grant(t, v, info.ID, "r").Token, "r")
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("redeem after the overlapped Put: %d bytes, %v", len(got), err)
	}
}
