package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// TestDecideBoundToViews: a decision (which may destroy the document) is
// accepted only from a principal the logs say redeemed the document within
// DecideWindow, on any instance, or from the role Config.Access.DecideWithoutView
// names. A stolen identity deciding about documents it never opened
// destroys nothing, every refusal is audited, and the burst is alerted.
func TestDecideBoundToViews(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	kek := testKEK(t)
	var al alerts
	supervisor := func(p string) bool { return p == "supervisor" }
	a := openTestVault(t, st, kek, func(c *Config) { c.Detection.OnAlert = al.on; c.Access.DecideWithoutView = supervisor })
	b := openTestVault(t, st, kek, func(c *Config) { c.Access.DecideWithoutView = supervisor })
	var ids []string
	for range 30 {
		ids = append(ids, putImage(t, a, image(4096, ""), "m").ID)
	}

	// Viewed on a, decided on b.
	if _, err := redeemAll(a, grant(t, a, ids[0], "reviewer").Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if err := b.Decide(ctx, ids[0], Decision{Verdict: Approved}, Actor{Principal: "reviewer"}); err != nil {
		t.Fatalf("decision on another instance after a view: %v", err)
	}
	// Granted, never opened: not a view.
	grant(t, a, ids[1], "reviewer")
	if err := a.Decide(ctx, ids[1], Decision{Verdict: Approved}, Actor{Principal: "reviewer"}); !errors.Is(err, ErrNotViewed) {
		t.Fatalf("decision after a grant alone: %v, want ErrNotViewed", err)
	}
	// Viewed too long ago.
	if _, err := redeemAll(a, grant(t, a, ids[2], "reviewer").Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(DecideWindow + time.Minute)
	if err := a.Decide(ctx, ids[2], Decision{Verdict: Rejected}, Actor{Principal: "reviewer"}); !errors.Is(err, ErrNotViewed) {
		t.Fatalf("decision after DecideWindow: %v, want ErrNotViewed", err)
	}
	// Another principal's view does not count.
	if _, err := redeemAll(a, grant(t, a, ids[3], "reviewer").Token, "reviewer"); err != nil {
		t.Fatal(err)
	}
	if err := a.Decide(ctx, ids[3], Decision{Verdict: Approved}, Actor{Principal: "colleague"}); !errors.Is(err, ErrNotViewed) {
		t.Fatalf("decision by someone else than the viewer: %v, want ErrNotViewed", err)
	}
	// The role decides without a view.
	if err := a.Decide(ctx, ids[4], Decision{Verdict: HandedOn}, Actor{Principal: "supervisor"}); err != nil {
		t.Fatalf("DecideWithoutView: %v", err)
	}

	// A stolen identity approves everything it never opened.
	destroyed := 0
	for _, id := range ids[5:] {
		err := a.Decide(ctx, id, Decision{Verdict: Approved}, Actor{Principal: "stolen"})
		if err == nil {
			destroyed++
		} else if !errors.Is(err, ErrNotViewed) && !errors.Is(err, ErrQuotaExceeded) {
			t.Fatalf("stolen identity: %v", err)
		}
	}
	if destroyed != 0 {
		t.Fatalf("a stolen identity destroyed %d documents it never viewed", destroyed)
	}
	for _, id := range ids[5:] {
		if err := readErr(a, id); err != nil {
			t.Fatalf("document %s: %v", id, err)
		}
	}
	if al.count(AlertProbing) == 0 {
		t.Fatal("a burst of refused decisions raised no alert")
	}
	// Every attempt is audited as refused: for want of a view until the
	// burst of them froze the principal, as frozen after.
	notViewed, frozen := 0, 0
	for r, err := range audit.Scan(ctx, st, audit.Filter{Event: EventDecide, Outcome: audit.OutcomeRefused}) {
		if err != nil {
			t.Fatal(err)
		}
		switch r.Reason {
		case "not-viewed":
			notViewed++
		case "frozen":
			frozen++
		}
	}
	if notViewed < DefaultProbeThreshold || notViewed+frozen < len(ids[5:]) {
		t.Fatalf("%d refused decisions audited as not-viewed and %d as frozen, want at least %d and %d in all", notViewed, frozen, DefaultProbeThreshold, len(ids[5:]))
	}
}
