package faulttest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
)

// TestFaultAuditUnavailable: audit writes that fail, and audit writes that
// hang. Put and Grant refuse with ErrAuditUnavailable by their deadline
// (plus AuditMargin for Put); no document is committed without its
// "put ok" record. Redeem still serves: its release record is the signed
// spend entry under redeemed/, durable before the first byte, and folded
// into the log once it is back. Once the log is back the vault works again;
// with writes deaf to their context ("deaf": a hung mount, a black-holed
// connection), it works again while the hung calls are still outstanding.
func TestFaultAuditUnavailable(t *testing.T) {
	for _, b := range backends {
		for _, mode := range []string{"failing", "hanging", "deaf"} {
			t.Run(b.name+"/"+mode, func(t *testing.T) {
				fs := &faultStore{Store: b.new(t)}
				v, _ := openVault(t, fs, kektest.New(t), nil)
				info := put(t, v, 0)
				g := grant(t, v, info.ID)
				release := make(chan struct{})
				switch mode {
				case "failing":
					fs.set(failPrefix("audit/"), nil, nil)
				case "hanging":
					fs.set(hangPrefix("audit/", release), nil, nil)
				case "deaf":
					fs.set(deafPrefix("audit/", release), nil, nil)
				}
				img := jpeg(256 << 10)
				err := within(t, "Put with the audit log "+mode, func(ctx context.Context) error {
					_, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-2"})
					return err
				})
				if !errors.Is(err, vault.ErrAuditUnavailable) {
					t.Errorf("Put: %v; want ErrAuditUnavailable", err)
				}
				err = within(t, "Grant with the audit log "+mode, func(ctx context.Context) error {
					_, err := v.Grant(ctx, info.ID, review)
					return err
				})
				if !errors.Is(err, vault.ErrAuditUnavailable) {
					t.Errorf("Grant: %v; want ErrAuditUnavailable", err)
				}
				err = within(t, "Redeem with the audit log "+mode, func(ctx context.Context) error {
					rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-1"})
					if err == nil {
						rc.Close()
					}
					return err
				})
				if err != nil {
					t.Errorf("Redeem with only audit/ down: %v; want it served (its record is the spend entry)", err)
				}
				spent := 0
				for _, err := range fs.Store.List(context.Background(), "redeemed/") {
					if err != nil {
						t.Fatal(err)
					}
					spent++
				}
				if spent != 1 {
					t.Errorf("%d spend entries after the redemption, want 1 (its durable release record)", spent)
				}
				fs.set(nil, nil, nil)
				if mode == "deaf" {
					defer close(release) // the hung calls return only at the end
				} else {
					close(release)
				}
				// The log is back: the vault serves again.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				g2, err := v.Grant(ctx, info.ID, review)
				if err != nil {
					t.Fatalf("Grant after the audit log came back: %v", err)
				}
				rc, _, err := v.Redeem(ctx, g2.Token, vault.Requester{Principal: "reviewer-1"})
				if err != nil {
					t.Fatalf("Redeem after the audit log came back: %v", err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != info.Size {
					t.Fatalf("read %d of %d bytes: %v", n, info.Size, err)
				}
				// After the records that waited behind the hung write.
				checkPutTrail(t, fs.Store)
			})
		}
	}
}

// TestFaultSyncAuditTellsTheTruth (issue 24.3): a redemption is served
// while the audit log refuses writes (its release record is durable in its
// spend entry), so the folder cannot fold it into the log. SyncAudit must
// then say so (ErrAuditUnavailable), also once the log answers again, until
// the release is in a log: after a Sweep past the adoption age it returns
// nil and the release record is there. Before: SyncAudit returned nil as
// soon as the folder had tried, with the release in no log.
func TestFaultSyncAuditTellsTheTruth(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fs := &faultStore{Store: b.new(t)}
			v, clk := openVault(t, fs, kektest.New(t), nil)
			info := put(t, v, 0)
			g := grant(t, v, info.ID)
			fs.set(failPrefix("audit/"), nil, nil)
			rc, _, err := v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-1"})
			if err != nil {
				t.Fatalf("Redeem with the audit log down: %v; want it served (its record is the spend entry)", err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := v.Admin().SyncAudit(ctx); !errors.Is(err, vault.ErrAuditUnavailable) {
				t.Fatalf("SyncAudit with the release not folded: %v; want ErrAuditUnavailable", err)
			}
			fs.set(nil, nil, nil)
			if err := v.Admin().SyncAudit(ctx); !errors.Is(err, vault.ErrAuditUnavailable) {
				t.Fatalf("SyncAudit with the log back but the release in no log yet: %v; want ErrAuditUnavailable", err)
			}
			if n := len(records(t, fs.Store, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK})); n != 0 {
				t.Fatalf("%d release records in the log before adoption; the test assumes the fold failed", n)
			}
			clk.Advance(3 * time.Minute) // past the adoption age
			if _, err := v.Admin().Sweep(ctx, operator); err != nil {
				t.Fatal(err)
			}
			if err := v.Admin().SyncAudit(ctx); err != nil {
				t.Fatalf("SyncAudit after the release was adopted: %v", err)
			}
			if n := len(records(t, fs.Store, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK})); n != 1 {
				t.Fatalf("%d release records in the log after adoption, want 1", n)
			}
		})
	}
}
