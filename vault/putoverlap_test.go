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
	subjectDone atomic.Bool
	payloadOpen atomic.Bool   // the payload's body ended before the subject entry was durable
	payloadEnd  chan struct{} // closed when the payload's body ends
}

// eofWatch calls atEOF when its reader first ends.
type eofWatch struct {
	io.Reader
	atEOF func()
	once  sync.Once
}

func (r *eofWatch) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err == io.EOF {
		r.once.Do(r.atEOF)
	}
	return n, err
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
		// Give the payload every chance to finish first (it must not).
		select {
		case <-s.payloadEnd:
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		err := s.Store.Put(ctx, key, r, size, o)
		if err == nil {
			s.subjectDone.Store(true)
		}
		return err
	case strings.HasPrefix(key, "blobs/"):
		r = &eofWatch{Reader: r, atEOF: func() {
			if !s.subjectDone.Load() {
				s.payloadOpen.Store(true)
			}
			close(s.payloadEnd)
		}}
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
// And the payload's last segment waits for the subject entry: the document
// is never complete (key record and payload) without the subject entry
// that leads EraseSubject and ListSubject to it.
func TestPutIndexesOverlapKeyRecord(t *testing.T) {
	st := &indexOrderStore{Store: memstore.New(), keyStarted: make(chan struct{}), payloadEnd: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	img := image(64<<10, "")
	info := putImage(t, v, img, "m")
	if st.late.Load() {
		t.Fatal("the key record's write waited for the subject index entry's")
	}
	if st.beforeIndex.Load() {
		t.Fatal("a subject index entry or key record was written before the expiry index entry was durable")
	}
	if st.payloadOpen.Load() {
		t.Fatal("the payload was complete before the subject index entry was durable: a crash there leaves a readable document EraseSubject cannot find")
	}
	got, err := redeemAll(v, grant(t, v, info.ID, "r").Token, "r")
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("redeem after the overlapped Put: %d bytes, %v", len(got), err)
	}
}
