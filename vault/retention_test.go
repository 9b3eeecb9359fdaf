package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

func readErr(v *testVault, id string) error {
	oid, err := parseObjectID(id)
	if err != nil {
		return err
	}
	rc, _, err := v.openObject(context.Background(), oid)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	return err
}

// TestSweepTenThousand: 10,000 objects across 10 expiry hours; the clock
// moves, Sweep runs, and every object is exactly where it should be.
func TestSweepTenThousand(t *testing.T) {
	n, hours := 10000, 10
	if testing.Short() {
		n = 1000
	}
	v, st := newMemVault(t)
	start := v.clock.Now()
	ids := make([]string, n)
	img := image(64, "")
	for i := range n {
		v.clock.Set(start.Add(time.Duration(i*hours/n) * time.Hour))
		ids[i] = putImage(t, v, img, fmt.Sprintf("member-%d", i%97)).ID
	}
	held := map[string]bool{ids[0]: true, ids[n/3]: true}
	for id := range held {
		if err := v.Admin().Hold(context.Background(), id, Actor{Principal: "operator-1", Reason: "case 2026-17"}); err != nil {
			t.Fatal(err)
		}
	}
	// Objects put during the first 5 hours are past their deadline.
	v.clock.Set(start.Add(DefaultRetention + 5*time.Hour - time.Minute))
	expiredCut := n * 5 / hours
	for _, i := range []int{1, expiredCut - 1} { // refused before any sweep
		if err := readErr(v, ids[i]); !errors.Is(err, ErrExpired) {
			t.Fatalf("object %d before sweep: %v, want ErrExpired", i, err)
		}
	}
	rep, err := v.Admin().Sweep(context.Background(), testActor)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expired != expiredCut-2 || rep.Held != 2 {
		t.Fatalf("report %+v, want %d expired and 2 held", rep, expiredCut-2)
	}
	for i, id := range ids {
		err := readErr(v, id)
		switch {
		case held[id]:
			if err != nil {
				t.Fatalf("held object %d: %v", i, err)
			}
		case i < expiredCut:
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
				t.Fatalf("expired object %d: %v", i, err)
			}
		default:
			if err != nil {
				t.Fatalf("live object %d: %v", i, err)
			}
		}
	}
	// Nothing of the expired objects is left, and a second Sweep is a no-op.
	left := 0
	for _, k := range st.Keys() {
		for _, i := range []int{1, 2, expiredCut - 1} {
			if strings.Contains(k, ids[i]) {
				left++
				t.Errorf("left behind: %s", k)
			}
		}
	}
	rep2, err := v.Admin().Sweep(context.Background(), testActor)
	if err != nil || rep2.Expired != 0 || rep2.Held != 2 {
		t.Fatalf("second sweep: %+v %v", rep2, err)
	}
	// Release: a held object past its deadline expires at once.
	if err := v.Admin().Release(context.Background(), ids[0], Actor{Principal: "operator-1", Reason: "case closed"}); err != nil {
		t.Fatal(err)
	}
	if err := readErr(v, ids[0]); !errors.Is(err, ErrExpired) {
		t.Fatalf("released object: %v", err)
	}
	if rep3, _ := v.Admin().Sweep(context.Background(), testActor); rep3.Expired != 1 {
		t.Fatalf("sweep after release: %+v", rep3)
	}
}

// cancelAfter cancels the sweep's context after n deletes.
type cancelAfter struct {
	store.Store
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Delete(ctx context.Context, key string) error {
	if c.n.Add(-1) < 0 {
		c.cancel()
		return context.Canceled
	}
	return c.Store.Delete(ctx, key)
}

// TestSweepInterrupted: a Sweep cancelled half way, then run again, ends
// clean with nothing left behind.
func TestSweepInterrupted(t *testing.T) {
	for _, cut := range []int64{1, 2, 3, 5, 8, 13, 40} {
		ms := memstore.New()
		ca := &cancelAfter{Store: ms}
		ca.n.Store(1 << 40)
		v := openTestVault(t, ca, testKEK(t), nil)
		for i := range 8 {
			putImage(t, v, image(100+i, ""), "m")
		}
		v.clock.Advance(DefaultRetention + time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		ca.cancel = cancel
		ca.n.Store(cut)
		if _, err := v.sweep(ctx, testActor, nil); err == nil {
			t.Fatalf("cut %d: interrupted sweep reported success", cut)
		}
		ca.n.Store(1 << 40)
		if _, err := v.Admin().Sweep(context.Background(), testActor); err != nil {
			t.Fatalf("cut %d: second sweep: %v", cut, err)
		}
		for _, k := range ms.Keys() {
			if !strings.HasPrefix(k, "audit/") && !strings.HasPrefix(k, "system/") {
				t.Errorf("cut %d: left behind %s", cut, k)
			}
		}
	}
}

// TestSweepConcurrentS3: two Sweeps at once on one MinIO bucket: no error,
// each object deleted once (one deletion receipt each).
func TestSweepConcurrentS3(t *testing.T) {
	st := s3Backend(t)
	kek := testKEK(t)
	a := openTestVault(t, st, kek, nil)
	b := openTestVault(t, st, kek, nil)
	const n = 40
	for i := range n {
		putImage(t, a, image(200+i, ""), "m")
	}
	a.clock.Advance(DefaultRetention + time.Hour)
	b.clock.Set(a.clock.Now())
	var wg sync.WaitGroup
	reps := make([]SweepReport, 2)
	errs := make([]error, 2)
	for i, v := range []*testVault{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = v.Admin().Sweep(context.Background(), testActor)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	receipts := map[string]int{}
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Event: audit.EventExpire}) {
		if err != nil {
			t.Fatal(err)
		}
		receipts[r.Object]++
	}
	if len(receipts) != n {
		t.Fatalf("%d objects have receipts, want %d (reports %+v)", len(receipts), n, reps)
	}
	for id, c := range receipts {
		if c != 1 {
			t.Errorf("object %s deleted %d times", id, c)
		}
	}
	if k := storeKeys(t, st, "keys/"); len(k) != 0 {
		t.Fatalf("key records left: %d", len(k))
	}
	if k := storeKeys(t, st, "blobs/"); len(k) != 0 {
		t.Fatalf("payloads left: %d", len(k))
	}
}

// TestShredding: after Delete, no byte sequence of the object's data key
// and no part of its wrapped-key record remains anywhere in the store.
func TestShredding(t *testing.T) {
	v, st := newMemVault(t)
	info := putImage(t, v, image(150<<10, ""), "m")
	keep := putImage(t, v, image(150<<10, ""), "m")
	id, _ := parseObjectID(info.ID)
	record, _ := st.Bytes(keyRecordKey(id))
	kekID, err := envelope.PeekKEKID(record)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := record[4+1+1+len(kekID)+2:] // past the clear header every record shares
	_, key, err := v.loadRecord(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	dataKey := key.MaterialForTesting()
	key.Destroy()
	if err := v.Admin().Delete(context.Background(), info.ID, Actor{Principal: "operator-1", Reason: "decision made"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range st.Keys() {
		b, _ := st.Bytes(k)
		if bytes.Contains(b, dataKey) {
			t.Errorf("%s holds the data key", k)
		}
		for off := 0; off+16 <= len(wrapped); off += 16 {
			if bytes.Contains(b, wrapped[off:off+16]) {
				t.Errorf("%s holds part of the key record", k)
				break
			}
		}
	}
	if err := readErr(v, info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read after delete: %v", err)
	}
	if err := readErr(v, keep.ID); err != nil {
		t.Fatalf("other object: %v", err)
	}
}

func TestEraseSubject(t *testing.T) {
	v, _ := newMemVault(t)
	var alice, bob []string
	for i := range 5 {
		alice = append(alice, putImage(t, v, image(100+i, ""), "alice").ID)
		bob = append(bob, putImage(t, v, image(100+i, ""), "bob").ID)
	}
	if err := v.Admin().Hold(context.Background(), alice[4], Actor{Principal: "operator-1", Reason: "litigation"}); err != nil {
		t.Fatal(err)
	}
	n, err := v.Admin().EraseSubject(context.Background(), "alice", Actor{Principal: "operator-1", Reason: "member left"})
	if n != 4 || !errors.Is(err, ErrHeld) {
		t.Fatalf("erase: n=%d err=%v, want 4 and ErrHeld", n, err)
	}
	for _, id := range alice[:4] {
		if err := readErr(v, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("alice's %s: %v", id, err)
		}
	}
	if err := readErr(v, alice[4]); err != nil {
		t.Fatalf("held: %v", err)
	}
	for _, id := range bob {
		if err := readErr(v, id); err != nil {
			t.Fatalf("bob's %s: %v", id, err)
		}
	}
	if err := v.Admin().Delete(context.Background(), alice[4], Actor{Principal: "operator-1", Reason: "x"}); !errors.Is(err, ErrHeld) {
		t.Fatalf("delete of held: %v", err)
	}
	if n, err := v.Admin().EraseSubject(context.Background(), "nobody", Actor{Principal: "operator-1", Reason: "x"}); n != 0 || err != nil {
		t.Fatalf("erase of unknown subject: %d %v", n, err)
	}
}

func TestSweepCollectsGarbage(t *testing.T) {
	v, st := newMemVault(t)
	// An orphan payload: a Put that died after the payload.
	orphan := putImage(t, v, image(500, ""), "m")
	oid, _ := parseObjectID(orphan.ID)
	st.Delete(context.Background(), keyRecordKey(oid))
	// A spent token.
	live := putImage(t, v, image(500, ""), "m")
	g := grant(t, v, live.ID, "r")
	if _, err := redeemAll(v, g.Token, "r"); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Admin().Sweep(context.Background(), testActor)
	if err != nil || rep.Orphans != 0 || rep.Ledger != 0 {
		t.Fatalf("first sweep collected too early: %+v %v", rep, err)
	}
	v.clock.Advance(DefaultOrphanGrace + 2*time.Minute)
	rep, err = v.Admin().Sweep(context.Background(), testActor)
	if err != nil || rep.Orphans != 1 || rep.Ledger != 1 {
		t.Fatalf("second sweep: %+v %v", rep, err)
	}
	if _, ok := st.Bytes(blobKey(oid)); ok {
		t.Fatal("orphan payload still there")
	}
	if err := readErr(v, live.ID); err != nil {
		t.Fatalf("live object: %v", err)
	}
	// The spent token is still refused (expired now) after its entry went.
	if _, err := redeemAll(v, g.Token, "r"); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("collected token: %v", err)
	}
}

// TestKeyStoreVersioning: a versioned key store defeats shredding and is
// refused unless explicitly allowed; a separate unversioned one works with
// an object-locked main bucket.
func TestKeyStoreVersioning(t *testing.T) {
	srv := miniotest.Server(t)
	ctx := context.Background()
	c := newClock()
	mk := func(bucket string) store.Store { return s3BackendAt(t, srv, bucket, c) }
	locked := mk(srv.NewBucket(t, true))
	versioned := mk(srv.NewVersionedBucket(t))
	plain := mk(srv.NewBucket(t, false))
	kek := testKEK(t)
	if _, err := Open(ctx, Config{Store: locked, KEK: kek}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("object-locked store as key store: %v", err)
	}
	if _, err := Open(ctx, Config{Store: plain, KEK: kek, Storage: StorageConfig{KeyStore: versioned}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("versioned key store: %v", err)
	}
	v := openTestVault(t, locked, kek, func(c *Config) { c.Storage.KeyStore = plain })
	info := putImage(t, v, image(1000, ""), "m")
	if got := storeKeys(t, plain, "keys/"); len(got) != 1 {
		t.Fatalf("key records in the key store: %v", got)
	}
	if err := v.Admin().Delete(ctx, info.ID, Actor{Principal: "operator-1", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	// Audit batches in the locked bucket are write-once (leases under
	// audit/_lease/ are renewed, so they are not the object to try).
	var keys []string
	for _, k := range storeKeys(t, locked, "audit/") {
		if !strings.HasPrefix(k, "audit/_") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		t.Fatal("no audit batches")
	}
	if err := locked.Delete(ctx, keys[0]); !errors.Is(err, store.ErrRetained) {
		t.Fatalf("delete of an audit object: %v, want ErrRetained", err)
	}
	if err := locked.Put(ctx, keys[0], strings.NewReader("x"), 1, store.PutOptions{}); err == nil {
		t.Fatal("overwrite of an audit object succeeded")
	}
	v.Close(ctx)
	allowed, err := Open(ctx, Config{Store: plain, KEK: kek, Storage: StorageConfig{KeyStore: versioned, AllowVersionedKeyStore: true}})
	if err != nil {
		t.Fatalf("versioned key store, explicitly allowed: %v", err)
	}
	// Close it: an open vault renews its audit lease in the background.
	if err := allowed.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
