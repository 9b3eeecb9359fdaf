package vault

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/store"
)

// overlapStore holds the limiter's count writes, while armed, until the
// payload of blob has been asked for (or 5 s have passed: late).
type overlapStore struct {
	store.Store
	armed    atomic.Bool
	blob     string
	seenOnce sync.Once
	seen     chan struct{}
	late     atomic.Bool
}

func (s *overlapStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if s.armed.Load() && key == s.blob {
		s.seenOnce.Do(func() { close(s.seen) })
	}
	return s.Store.Get(ctx, key)
}

func (s *overlapStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if s.armed.Load() && strings.HasPrefix(key, "counts/") {
		select {
		case <-s.seen:
		case <-time.After(5 * time.Second):
			s.late.Store(true)
		}
	}
	return s.Store.Put(ctx, key, body, size, opts)
}

// TestRedeemQuotaOverlapsReads: Redeem's quota check (a count in the
// shared limiter: a conditional write on the default limiter) runs while
// the payload and the key record are read, not before. Before the change
// the count was written first and the reads waited for it.
func TestRedeemQuotaOverlapsReads(t *testing.T) {
	mem := memstore.New()
	st := &overlapStore{Store: mem, seen: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	st.blob = blobKey(mustObjectID(t, info.ID))
	st.armed.Store(true)
	if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if st.late.Load() {
		t.Fatal("the redemption's quota count was written before the payload was asked for: in series, not overlapped")
	}
}

// countingKEK counts Decrypt calls (key-record opens).
type countingKEK struct {
	kms.KEK
	decrypts atomic.Int64
}

func (k *countingKEK) Decrypt(ctx context.Context, ciphertext, ad []byte) ([]byte, error) {
	k.decrypts.Add(1)
	return k.KEK.Decrypt(ctx, ciphertext, ad)
}

// TestRedeemQuotaRefusalOpensNothing: a redemption refused by its quota,
// now checked alongside the reads, still spends nothing (no spend entry,
// the token stays unspent), opens no key record (no KEK call) and
// releases nothing.
func TestRedeemQuotaRefusalOpensNothing(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	kek := &countingKEK{KEK: testKEK(t)}
	v := openTestVault(t, mem, kek, func(c *Config) { c.Quota = Quota{Redemptions: 1, Documents: 100, Burst: 100} })
	info := putImage(t, v, image(40<<10, ""), "member-1")
	if _, err := redeemAll(v, grant(t, v, info.ID, "reviewer").Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	g := grant(t, v, info.ID, "reviewer")
	before := kek.decrypts.Load()
	rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "reviewer"})
	if !errors.Is(err, ErrQuotaExceeded) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("redemption over quota: %v, want ErrQuotaExceeded", err)
	}
	if n := kek.decrypts.Load() - before; n != 0 {
		t.Errorf("a refused redemption opened %d key records", n)
	}
	if _, err := mem.Get(ctx, ledgerKey(tokenOf(t, v, g.Token))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused redemption wrote its spend entry: %v", err)
	}
}

func mustObjectID(t testing.TB, s string) objectID {
	t.Helper()
	id, err := parseObjectID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
