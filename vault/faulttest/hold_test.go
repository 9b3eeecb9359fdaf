package faulttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// TestFaultHoldRollback (issue 12.4): restoring an older key record from a
// backup can neither undo a legal hold nor a release.
//
//   - Copy keys/<id> before Hold, put it back after: Sweep past the
//     deadline must not shred the document (before the fix: Expired 1,
//     with a deletion receipt).
//   - Copy the held keys/<id> before Release, put it back after: the
//     document must not be grantable past its deadline (before: it was).
//
// Either way the document is kept and reported (SweepReport.Unknown) until
// an operator repeats the Hold or Release, which settles it.
func TestFaultHoldRollback(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name+"/restore-record-from-before-hold", func(t *testing.T) {
			st := b.new(t)
			v, clk, al := openAlerting(t, st)
			info := put(t, v, time.Hour)
			before := read(t, st, "keys/"+info.ID)
			if err := v.Admin().Hold(context.Background(), info.ID, operator); err != nil {
				t.Fatal(err)
			}
			write(t, st, "keys/"+info.ID, before) // the rollback
			clk.Advance(2 * time.Hour)
			rep, err := v.Admin().Sweep(context.Background(), operator)
			if err != nil || rep.Expired != 0 || rep.Unknown != 1 {
				t.Fatalf("Sweep after rolling back the hold = %+v, %v; want Expired 0, Unknown 1", rep, err)
			}
			if err := v.Admin().Delete(context.Background(), info.ID, operator); err == nil || !exists(t, st, "keys/"+info.ID) {
				t.Fatalf("Delete after rolling back the hold: %v; the held document must stay", err)
			}
			if alerts := al.all(); len(alerts) == 0 || alerts[0].Kind != vault.AlertTampered {
				t.Fatalf("no AlertTampered raised for the rollback: %+v", alerts)
			}
			// The operator repeats the hold: settled, held.
			if err := v.Admin().Hold(context.Background(), info.ID, operator); err != nil {
				t.Fatal(err)
			}
			rep, err = v.Admin().Sweep(context.Background(), operator)
			if err != nil || rep.Held != 1 || rep.Expired != 0 || rep.Unknown != 0 {
				t.Fatalf("Sweep after the hold was repeated = %+v, %v; want Held 1", rep, err)
			}
			if _, err := v.Grant(context.Background(), info.ID, vault.Access{Principal: "reviewer-1", Purpose: "legal"}); err != nil {
				t.Fatalf("a held document past its deadline: Grant = %v", err)
			}
		})
		t.Run(b.name+"/restore-held-record-after-release", func(t *testing.T) {
			st := b.new(t)
			v, clk := openVault(t, st, kektest.New(t), nil)
			info := put(t, v, time.Hour)
			if err := v.Admin().Hold(context.Background(), info.ID, operator); err != nil {
				t.Fatal(err)
			}
			held := read(t, st, "keys/"+info.ID)
			if err := v.Admin().Release(context.Background(), info.ID, operator); err != nil {
				t.Fatal(err)
			}
			write(t, st, "keys/"+info.ID, held) // the rollback
			clk.Advance(2 * time.Hour)
			if _, err := v.Grant(context.Background(), info.ID, review); err == nil {
				t.Fatal("a released document past its deadline was granted after its held key record was restored")
			}
			// The operator repeats the release: settled, expired at once.
			if err := v.Admin().Release(context.Background(), info.ID, operator); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Grant(context.Background(), info.ID, review); !errors.Is(err, vault.ErrExpired) {
				t.Fatalf("Grant after the release was repeated: %v; want ErrExpired", err)
			}
			rep, err := v.Admin().Sweep(context.Background(), operator)
			if err != nil || rep.Expired != 1 {
				t.Fatalf("Sweep = %+v, %v; want Expired 1", rep, err)
			}
		})
		t.Run(b.name+"/forged-state-entry", func(t *testing.T) {
			// An entry not made with the vault's key (anyone with write
			// access to the store can drop one at the next number) breaks
			// the state chain: every hold is then in doubt.
			st := b.new(t)
			v, clk := openVault(t, st, kektest.New(t), nil)
			put(t, v, time.Hour)
			next := len(keys(t, st, audit.StatePrefix)) + 1
			write(t, st, audit.StateKey(int64(next)), []byte("idvault state v1\nforged\n"))
			clk.Advance(2 * time.Hour)
			rep, err := v.Admin().Sweep(context.Background(), operator)
			if err != nil || rep.Expired != 0 || rep.Unknown != 1 {
				t.Fatalf("Sweep with a forged state entry = %+v, %v; want Unknown 1", rep, err)
			}
		})
	}
}

// TestFaultStateEntriesWriteOnce: on an object-lock bucket (the key
// records in a second, unversioned bucket, as the README says) the state
// chain's entries cannot be deleted through the store: S3 itself refuses.
// (A DELETE without a version ID hides one behind a delete marker; the
// vault reads through it: vault.TestHeldStaysHeld/s3-locked.)
func TestFaultStateEntriesWriteOnce(t *testing.T) {
	srv := miniotest.Server(t)
	st := s3On(t, srv)
	locked, err := s3store.New(context.Background(), srv.Client(t), srv.NewBucket(t, true), s3store.Options{Now: clockOf(st).Now})
	if err != nil {
		t.Fatal(err)
	}
	storeClocks.Store(store.Store(locked), clockOf(st))
	v, _ := openVault(t, locked, kektest.New(t), func(c *vault.Config) { c.Storage.KeyStore = st })
	info := put(t, v, time.Hour)
	if err := v.Admin().Hold(context.Background(), info.ID, operator); err != nil {
		t.Fatal(err)
	}
	entries := keys(t, locked, audit.StatePrefix)
	if len(entries) != 1 {
		t.Fatalf("%d state entries, want 1", len(entries))
	}
	if err := locked.Delete(context.Background(), entries[0]); !errors.Is(err, store.ErrRetained) {
		t.Fatalf("Delete of a state entry on an object-lock bucket: %v; want store.ErrRetained", err)
	}
}
