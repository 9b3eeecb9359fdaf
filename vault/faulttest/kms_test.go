package faulttest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// kekFault is one way for the KEK to be unavailable.
type kekFault struct {
	name string
	// kek returns the KEK and the switch that takes it down.
	kek func(t *testing.T) (kms.KEK, func(down bool))
	// hangs: calls block until their context ends (every call below is
	// then given a short deadline).
	hangs bool
}

var kekFaults = []kekFault{
	{name: "tink-grpc-unavailable", kek: func(t *testing.T) (kms.KEK, func(bool)) {
		a := newKMSAEAD(t)
		return kms.FromAEAD("gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", a), func(d bool) { a.down.Store(d) }
	}},
	{name: "plain-kek-failing", kek: func(t *testing.T) (kms.KEK, func(bool)) {
		k := &plainKEK{inner: kektest.New(t)}
		return k, func(d bool) { k.mode.Store(map[bool]string{true: "fail", false: ""}[d]) }
	}},
	{name: "plain-kek-hanging", hangs: true, kek: func(t *testing.T) (kms.KEK, func(bool)) {
		k := &plainKEK{inner: kektest.New(t)}
		return k, func(d bool) { k.mode.Store(map[bool]string{true: "hang", false: ""}[d]) }
	}},
}

// TestFaultKEKOutageDestroysNothing: with the KEK unavailable (a Tink KMS
// AEAD answering gRPC Unavailable, an adapter failing with its own error, an
// adapter that hangs), a held document, one with 40 minutes left and one
// past its deadline survive Sweep and Delete; every call says
// ErrKEKUnavailable (Open too, not ErrWrongKEK), and Grant's refusal is
// audited as "kek-unavailable", not "tampered", and so is Redeem's, also
// when the KEK hangs until the call's deadline (issue 24.3: before, those
// two refusal records were appended with the caller's ended context and
// never written). Once the KEK is back, Sweep expires exactly the expired
// document. Before the fix, the Tink case shredded the held and the
// expired document and Delete destroyed the held one.
func TestFaultKEKOutageDestroysNothing(t *testing.T) {
	for _, b := range backends {
		for _, f := range kekFaults {
			t.Run(b.name+"/"+f.name, func(t *testing.T) {
				st := b.new(t)
				kek, setDown := f.kek(t)
				v, clk := openVault(t, st, kek, func(c *vault.Config) { c.Retention.Period = 2 * time.Hour })
				held := put(t, v, time.Hour)
				if err := v.Admin().Hold(context.Background(), held.ID, operator); err != nil {
					t.Fatal(err)
				}
				expired := put(t, v, time.Hour)
				live := put(t, v, 2*time.Hour)
				clk.Advance(80 * time.Minute) // held and expired are past their deadline; live has 40 min left
				ids := []string{held.ID, expired.ID, live.ID}
				g := grant(t, v, live.ID)

				setDown(true)
				call := func() (context.Context, context.CancelFunc) {
					if f.hangs {
						// Long enough for the store calls before the KEK on
						// a loaded machine: the KEK's hang must be what ends it.
						return context.WithTimeout(context.Background(), testenv.Scale(300*time.Millisecond))
					}
					return context.WithTimeout(context.Background(), 10*time.Second)
				}
				ctx, cancel := call()
				rep, err := v.Admin().Sweep(ctx, operator)
				cancel()
				if rep.Expired != 0 {
					t.Errorf("Sweep during the outage shredded %d documents", rep.Expired)
				}
				if !f.hangs && (err != nil || rep.Unknown != 2) {
					t.Errorf("Sweep during the outage = %+v, %v; want Unknown 2 (held, expired) and no error", rep, err)
				}
				for _, id := range []string{held.ID, live.ID} {
					ctx, cancel := call()
					err := v.Admin().Delete(ctx, id, operator)
					cancel()
					if !errors.Is(err, vault.ErrKEKUnavailable) || errors.Is(err, vault.ErrTampered) {
						t.Errorf("Delete during the outage: %v; want ErrKEKUnavailable", err)
					}
				}
				ctx, cancel = call()
				_, err = v.Grant(ctx, live.ID, review)
				cancel()
				if !errors.Is(err, vault.ErrKEKUnavailable) || errors.Is(err, vault.ErrTampered) {
					t.Errorf("Grant during the outage: %v; want ErrKEKUnavailable", err)
				}
				ctx, cancel = call()
				_, _, err = v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-1"})
				cancel()
				if !errors.Is(err, vault.ErrKEKUnavailable) || errors.Is(err, vault.ErrTampered) {
					t.Errorf("Redeem during the outage: %v; want ErrKEKUnavailable", err)
				}
				ctx, cancel = call()
				img := jpeg(4 << 10)
				_, err = v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-of-all"})
				cancel()
				if !errors.Is(err, vault.ErrKEKUnavailable) {
					t.Errorf("Put during the outage: %v; want ErrKEKUnavailable", err)
				}
				ctx, cancel = call()
				n, err := v.Admin().EraseSubject(ctx, "member-of-all", operator)
				cancel()
				if n != 0 || err == nil {
					t.Errorf("EraseSubject during the outage = %d, %v", n, err)
				}
				ctx, cancel = call()
				_, err = vault.Open(ctx, vault.Config{Store: st, KEK: kek})
				cancel()
				if !errors.Is(err, vault.ErrKEKUnavailable) || errors.Is(err, vault.ErrWrongKEK) {
					t.Errorf("Open during the outage: %v; want ErrKEKUnavailable, not ErrWrongKEK", err)
				}
				for _, id := range ids {
					if !exists(t, st, "keys/"+id) {
						t.Errorf("document %d of 3 destroyed during the outage", indexOf(ids, id)+1)
					}
				}
				// The refusals are recorded, also when the KEK hung until
				// the call's deadline (written in the background, which
				// SyncAudit waits for).
				sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := v.Admin().SyncAudit(sctx); err != nil {
					t.Errorf("SyncAudit: %v", err)
				}
				scancel()
				for _, ev := range []audit.Event{audit.EventGrant, audit.EventRedeem} {
					var reasons []string
					for _, r := range records(t, st, audit.Filter{Event: ev, Outcome: audit.OutcomeRefused, Object: live.ID}) {
						reasons = append(reasons, r.Reason)
					}
					if len(reasons) != 1 || reasons[0] != "kek-unavailable" {
						t.Errorf("%s refusal audited with reasons %q; want [kek-unavailable]", ev, reasons)
					}
				}

				setDown(false)
				rep, err = v.Admin().Sweep(context.Background(), operator)
				if err != nil || rep.Expired != 1 || rep.Held != 1 || rep.Unknown != 0 {
					t.Fatalf("Sweep after the outage = %+v, %v; want Expired 1 Held 1", rep, err)
				}
				if exists(t, st, "keys/"+expired.ID) || !exists(t, st, "keys/"+held.ID) || !exists(t, st, "keys/"+live.ID) {
					t.Fatal("Sweep after the outage removed the wrong documents")
				}
			})
		}
	}
}

func indexOf(s []string, x string) int {
	for i, y := range s {
		if y == x {
			return i
		}
	}
	return -1
}

// TestFaultTamperedRecordQuarantined: a key record that fails
// authentication is quarantined (kept, reported, audited, alerted once), not
// shredded by Sweep or Delete. Before: both shredded it silently.
func TestFaultTamperedRecordQuarantined(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.new(t)
			v, clk, al := openAlerting(t, st)
			info := put(t, v, time.Hour)
			rec := read(t, st, "keys/"+info.ID)
			rec[len(rec)-1] ^= 1
			write(t, st, "keys/"+info.ID, rec)
			clk.Advance(2 * time.Hour)
			for range 2 {
				rep, err := v.Admin().Sweep(context.Background(), operator)
				if err != nil || rep.Expired != 0 || rep.Quarantined != 1 {
					t.Fatalf("Sweep = %+v, %v; want Quarantined 1, Expired 0", rep, err)
				}
			}
			if err := v.Admin().Delete(context.Background(), info.ID, operator); !errors.Is(err, vault.ErrTampered) {
				t.Fatalf("Delete of a tampered record: %v; want ErrTampered", err)
			}
			if !exists(t, st, "keys/"+info.ID) || !exists(t, st, "quarantine/"+info.ID) {
				t.Fatal("the tampered record was not kept under quarantine")
			}
			if alerts := al.all(); len(alerts) != 1 || alerts[0].Kind != vault.AlertTampered || alerts[0].Object != info.ID {
				t.Fatalf("alerts = %+v; want one AlertTampered for the object", alerts)
			}
			if n := len(records(t, st, audit.Filter{Event: audit.EventExpire, Outcome: audit.OutcomeRefused, Object: info.ID})); n != 1 {
				t.Fatalf("%d quarantine records in the audit log, want 1", n)
			}
			if n := len(records(t, st, audit.Filter{Event: audit.EventExpire, Outcome: audit.OutcomeOK, Object: info.ID})); n != 0 {
				t.Fatalf("a deletion receipt was written for a quarantined record")
			}
		})
	}
}

var _ = store.ErrNotFound
