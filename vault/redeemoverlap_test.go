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
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// overlapStore, while armed, holds every read of the state chain until
// the payload of blob has been asked for (or 2 s have passed: late).
type overlapStore struct {
	store.Store
	armed    atomic.Bool
	blob     string
	seenOnce sync.Once
	seen     chan struct{}
	late     atomic.Bool
}

func (s *overlapStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if s.armed.Load() {
		if key == s.blob {
			s.seenOnce.Do(func() { close(s.seen) })
		} else if strings.HasPrefix(key, audit.StatePrefix) {
			select {
			case <-s.seen:
			case <-time.After(2 * time.Second):
				s.late.Store(true)
			}
		}
	}
	return s.Store.Get(ctx, key)
}

// TestRedeemQuotaOverlapsReads: Redeem's quota check (the freeze: a read
// of the state chain when this instance's view of it is stale) runs while
// the payload and the key record are read, not before. Before the change
// the check came first and the reads waited for it (here: for ever, so
// the chain read timed out).
func TestRedeemQuotaOverlapsReads(t *testing.T) {
	mem := memstore.New()
	st := &overlapStore{Store: mem, seen: make(chan struct{})}
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	st.blob = blobKey(mustObjectID(t, info.ID))
	v.chain.smu.Lock()
	v.chain.synced = time.Now().Add(-time.Second) // stale: the check reads the chain
	v.chain.smu.Unlock()
	st.armed.Store(true)
	if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if st.late.Load() {
		t.Fatal("the redemption's freeze check read the state chain before the payload was asked for: in series, not overlapped")
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

// TestRedeemQuotaRefusalOpensNothing: a redemption refused by its quota
// check (its principal frozen after the grant), now checked alongside the
// reads, still spends nothing (no spend entry), opens no key record (no
// KEK call) and releases nothing.
func TestRedeemQuotaRefusalOpensNothing(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	kek := &countingKEK{KEK: testKEK(t)}
	v := openTestVault(t, mem, kek, nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	if !v.freeze(ctx, "reviewer") {
		t.Fatal("freeze not written")
	}
	before := kek.decrypts.Load()
	rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "reviewer"})
	if !errors.Is(err, ErrFrozen) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("redemption by a frozen principal: %v, want ErrFrozen", err)
	}
	if n := kek.decrypts.Load() - before; n != 0 {
		t.Errorf("a refused redemption opened %d key records", n)
	}
	if _, err := mem.Get(ctx, ledgerKey(tokenOf(t, v, g.Token))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused redemption wrote its spend entry: %v", err)
	}
}

// TestRedeemWritesNoCount: a redemption writes nothing to the Limiter (its
// token was counted when granted); before, each wrote a count.
func TestRedeemWritesNoCount(t *testing.T) {
	cs := &countingStore{Store: memstore.New()}
	v := openTestVault(t, cs, testKEK(t), nil)
	info := putImage(t, v, image(40<<10, ""), "member-1")
	g := grant(t, v, info.ID, "reviewer")
	before := cs.counts.Load()
	if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if n := cs.counts.Load() - before; n != 0 {
		t.Fatalf("a redemption wrote %d limiter counts", n)
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
