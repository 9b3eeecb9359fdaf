package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/audit"
)

// decideBackends: the in-process limiter on memstore, and the default
// store limiter on MinIO (counts shared through conditional writes).
var decideBackends = map[string]func(t *testing.T, mod func(*Config)) *testVault{
	"memory": func(t *testing.T, mod func(*Config)) *testVault {
		return openTestVault(t, memstore.New(), testKEK(t), func(c *Config) {
			c.Detection.Limiter = NewMemoryLimiter()
			mod(c)
		})
	},
	"store-minio": func(t *testing.T, mod func(*Config)) *testVault {
		return openTestVault(t, s3Backend(t), testKEK(t), mod)
	},
}

// decideAll runs one Decide per id, all at once, and returns how many were
// carried out; every refusal must be ErrFrozen.
func decideAll(t *testing.T, v *testVault, ids []string, principal string, verdict Verdict) int {
	t.Helper()
	var done atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			err := v.Decide(context.Background(), id, Decision{Verdict: verdict}, Actor{Principal: principal, Reason: "test"})
			switch {
			case err == nil:
				done.Add(1)
			case !errors.Is(err, ErrFrozen):
				t.Errorf("decide: %v, want nil or ErrFrozen", err)
			}
		})
	}
	wg.Wait()
	return int(done.Load())
}

// view grants id to principal and redeems the token: the view Decide is
// bound to.
func view(t *testing.T, v *testVault, id, principal string) {
	t.Helper()
	if _, err := redeemAll(v, grant(t, v, id, principal).Token, principal); err != nil {
		t.Fatal(err)
	}
}

func countKind(kinds []AlertKind, k AlertKind) int {
	n := 0
	for _, x := range kinds {
		if x == k {
			n++
		}
	}
	return n
}

// present counts the ids whose document still exists.
func present(t *testing.T, v *testVault, ids []string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		oid, _ := parseObjectID(id)
		_, key, err := v.loadRecord(context.Background(), oid)
		switch {
		case err == nil:
			key.Destroy()
			n++
		case !errors.Is(err, ErrNotFound):
			t.Fatal(err)
		}
	}
	return n
}

// TestDecideBurstFreezeExact: a stolen reviewer identity that has opened
// 100 documents approves them all at once (approving deletes). With the
// default configuration at most DefaultDecisionBurst are deleted (the
// ticket of each decision's count decides; a request may also meet the
// freeze its parallel siblings set), one bulk-decisions alert is raised,
// the principal is frozen, and every document not decided is still there;
// on the shared store limiter on MinIO too.
func TestDecideBurstFreezeExact(t *testing.T) {
	for name, open := range decideBackends {
		t.Run(name, func(t *testing.T) {
			al := &alertLog{}
			v := open(t, func(c *Config) {
				c.Detection.OnAlert = al.add
				c.Detection.Quota = Quota{Burst: 1000, Documents: 1000} // views are not what this test is about
			})
			ids := putMembers(t, v, 100)
			for _, id := range ids {
				view(t, v, id, "thief")
			}
			done := decideAll(t, v, ids, "thief", Approved)
			kinds := al.kinds()
			t.Logf("%d of 100 decided; alerts %v", done, kinds)
			// At most the threshold's worth; fewer (even none) when the
			// freeze lands before a request's own check, as under load.
			if done > DefaultDecisionBurst {
				t.Errorf("%d decisions carried out in a parallel burst, want at most %d", done, DefaultDecisionBurst)
			}
			if n := countKind(kinds, AlertDecisions); n != 1 {
				t.Errorf("%d bulk-decisions alerts, want 1: %v", n, kinds)
			}
			if n := countKind(kinds, AlertFrozen); n != 1 {
				t.Errorf("%d freezes, want 1: %v", n, kinds)
			}
			if n := present(t, v, ids); n != 100-done {
				t.Errorf("%d documents left, want %d", n, 100-done)
			}
			// Frozen: the next decision is refused before anything is deleted.
			for _, id := range ids {
				if present(t, v, []string{id}) == 1 {
					if err := v.Decide(context.Background(), id, Decision{Verdict: Rejected}, Actor{Principal: "thief"}); !errors.Is(err, ErrFrozen) {
						t.Errorf("decision of a frozen principal: %v", err)
					}
					break
				}
			}
		})
	}
}

// TestDecideUnviewedFreezeExact: the attack of issue 22 on a role allowed
// to decide unseen (Config.Access.DecideWithoutView; anyone else is refused with
// ErrNotViewed: TestDecideNeedsView): a stolen supervisor identity
// approves 100 documents it never opened. The count of decisions beyond
// views stops it at DefaultUnviewed, with one decisions-unviewed alert,
// under 100 parallel calls.
func TestDecideUnviewedFreezeExact(t *testing.T) {
	for name, open := range decideBackends {
		t.Run(name, func(t *testing.T) {
			al := &alertLog{}
			v := open(t, func(c *Config) {
				c.Detection.OnAlert = al.add
				c.Access.DecideWithoutView = func(p string) bool { return p == "thief" }
			})
			ids := putMembers(t, v, 100)
			grant(t, v, ids[0], "thief") // one view: one decision more is allowed
			done := decideAll(t, v, ids, "thief", Approved)
			kinds := al.kinds()
			t.Logf("%d of 100 decided without a view; alerts %v", done, kinds)
			if done > DefaultUnviewed+1 { // fewer when the freeze lands first
				t.Errorf("%d unviewed decisions carried out, want at most %d", done, DefaultUnviewed+1)
			}
			if n := countKind(kinds, AlertUnviewed); n != 1 {
				t.Errorf("%d decisions-unviewed alerts, want 1: %v", n, kinds)
			}
			if n := present(t, v, ids); n != 100-done {
				t.Errorf("%d documents left, want %d", n, 100-done)
			}
		})
	}
}

// TestDecideAlertOnly: with the opt-out, the same burst alerts once and
// nothing is refused below the hourly quota.
func TestDecideAlertOnly(t *testing.T) {
	al := &alertLog{}
	v := openTestVault(t, memstore.New(), testKEK(t), func(c *Config) {
		c.Detection.OnAlert = al.add
		c.Detection.AlertOnly = true
		c.Detection.Quota = Quota{Burst: 1000, Documents: 1000, Decisions: 60}
	})
	ids := putMembers(t, v, 80)
	for _, id := range ids {
		view(t, v, id, "r")
	}
	var done, quota int
	for _, id := range ids {
		err := v.Decide(context.Background(), id, Decision{Verdict: Approved}, Actor{Principal: "r"})
		switch {
		case err == nil:
			done++
		case errors.Is(err, ErrQuotaExceeded) && !errors.Is(err, ErrFrozen):
			quota++
		default:
			t.Fatal(err)
		}
	}
	kinds := al.kinds()
	if done != 60 || quota != 20 || countKind(kinds, AlertDecisions) != 1 || countKind(kinds, AlertQuota) != 1 || countKind(kinds, AlertFrozen) != 0 {
		t.Fatalf("AlertOnly: %d decided, %d over quota, alerts %v; want 60, 20, one bulk-decisions and one quota alert, no freeze", done, quota, kinds)
	}
}

// TestDecideCanary: deciding about a canary raises AlertCanary like
// touching one, and freezes the principal by default: whether the decision
// is refused for want of a view (the stolen identity deciding what it
// lists) or carried out (a role that may decide unseen).
func TestDecideCanary(t *testing.T) {
	for _, verdict := range []Verdict{Approved, HandedOn} {
		for _, role := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/role=%v", verdict, role), func(t *testing.T) {
				v, _, al := newAbuseVault(t, Quota{}, true)
				if role {
					v.cfg.Access.DecideWithoutView = func(string) bool { return true }
				}
				real := putImage(t, v, image(2000, ""), "m")
				c := plantTestCanary(t, v)
				err := v.Decide(context.Background(), c, Decision{Verdict: verdict}, Actor{Principal: "insider"})
				if role && err != nil || !role && !errors.Is(err, ErrNotViewed) {
					t.Fatalf("decision about a canary: %v (it is answered like any other)", err)
				}
				if got := al.kinds(); !slices.Equal(got, []AlertKind{AlertCanary, AlertFrozen}) {
					t.Fatalf("alerts %v, want canary-touched, principal-frozen", got)
				}
				if _, err := v.Grant(context.Background(), real.ID, Access{Principal: "insider", Purpose: "p"}); !errors.Is(err, ErrFrozen) {
					t.Fatalf("grant after deciding a canary: %v, want ErrFrozen", err)
				}
			})
		}
	}
}

// plantTestCanary stores one canary document and returns its ID.
func plantTestCanary(t *testing.T, v *testVault) string {
	t.Helper()
	body := decoyBody(TypeJPEG, 2000)
	info, _, err := v.put(context.Background(), Document{Body: bytes.NewReader(body), Size: int64(len(body)), Subject: "canary-subject", Kind: "passport"}, true)
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// TestHandedOnAlert: a thief that hands on everything it views (so that no
// view stays undecided) raises AlertHandedOn before it has seen 25; a
// reviewer at 120 an hour who hands on a third of its documents (40 an
// hour) and one at 40 an hour who hands on two in five never do.
func TestHandedOnAlert(t *testing.T) {
	for _, c := range []struct {
		name    string
		every   time.Duration
		handOn  func(i int) bool
		views   int
		alertBy int // 0: none
	}{
		{"thief 199/h, hands on all", time.Hour / 199, func(int) bool { return true }, 200, 25},
		{"thief 40/h, hands on all", time.Hour / 40, func(int) bool { return true }, 80, 25},
		{"reviewer 120/h, hands on a third", 30 * time.Second, func(i int) bool { return i%3 == 0 }, 360, 0},
		{"reviewer 40/h, hands on two in five", 90 * time.Second, func(i int) bool { return i%5 < 2 }, 160, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, _, al := newAbuseVault(t, Quota{}, false)
			ctx := context.Background()
			ids := putMembers(t, v, c.views)
			for i, id := range ids {
				g, err := v.Grant(ctx, id, Access{Principal: "p", Purpose: "p"})
				if err == nil {
					_, err = redeemAll(v, g.Token, "p")
				}
				if err != nil {
					if c.alertBy != 0 && errors.Is(err, ErrFrozen) {
						break
					}
					t.Fatalf("view %d: %v; alerts %v", i, err, al.kinds())
				}
				verdict := Approved
				if c.handOn(i) {
					verdict = HandedOn
				}
				err = v.Decide(ctx, id, Decision{Verdict: verdict}, Actor{Principal: "p"})
				if err != nil && !errors.Is(err, ErrFrozen) {
					t.Fatal(err)
				}
				if slices.Contains(al.kinds(), AlertHandedOn) {
					t.Logf("views-handed-on after %d views", i+1)
					if c.alertBy == 0 || i+1 > c.alertBy {
						t.Fatalf("hand-on alert after %d views (want none, or by %d)", i+1, c.alertBy)
					}
					return
				}
				v.clock.Advance(c.every)
			}
			if c.alertBy != 0 {
				t.Fatalf("no views-handed-on alert: %v", al.kinds())
			}
			if k := al.kinds(); len(k) != 0 {
				t.Fatalf("honest reviewer raised %v", k)
			}
		})
	}
}

// TestDecisionRefusalCounted: a decision refused by the binding to views
// (ErrNotViewed) is audited with its reason and counted like a refused
// token: the 11th in 5 minutes raises AlertProbing and freezes.
func TestDecisionRefusalCounted(t *testing.T) {
	v, st, al := newAbuseVault(t, Quota{}, true)
	ctx := context.Background()
	id := putImage(t, v, image(100, ""), "m").ID
	for i := range DefaultProbeThreshold + 1 {
		rec := audit.Record{Event: EventDecide, Object: id, Principal: "thief", Reason: string(Approved)}
		err := v.refuseDecision(ctx, rec, ErrNotViewed)
		if !errors.Is(err, ErrNotViewed) {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if got := al.kinds(); !slices.Equal(got, []AlertKind{AlertProbing, AlertFrozen}) {
		t.Fatalf("alerts %v, want refusal-burst then principal-frozen", got)
	}
	n := 0
	for r, err := range audit.Scan(ctx, st, audit.Filter{Event: EventDecide, Outcome: audit.OutcomeRefused}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Reason == "not-viewed" && r.Principal == "thief" && r.Object == id {
			n++
		}
	}
	if n != DefaultProbeThreshold+1 {
		t.Fatalf("%d refused decisions audited, want %d", n, DefaultProbeThreshold+1)
	}
}

// TestFreezeByDefault: a Config with only Store and KEK freezes a
// principal that touched a canary; AlertOnly opts out; FreezeOnAlert and
// AlertOnly together are refused.
func TestFreezeByDefault(t *testing.T) {
	ctx := context.Background()
	for _, alertOnly := range []bool{false, true} {
		v := openTestVault(t, memstore.New(), testKEK(t), func(c *Config) { c.Detection.AlertOnly = alertOnly })
		real := putImage(t, v, image(2000, ""), "m")
		grant(t, v, plantTestCanary(t, v), "insider")
		_, err := v.Grant(ctx, real.ID, Access{Principal: "insider", Purpose: "p"})
		if alertOnly && err != nil || !alertOnly && !errors.Is(err, ErrFrozen) {
			t.Fatalf("AlertOnly=%v: grant after touching a canary: %v", alertOnly, err)
		}
	}
	if _, err := Open(ctx, Config{Store: memstore.New(), KEK: testKEK(t), Detection: DetectionConfig{AlertOnly: true, FreezeOnAlert: true}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("AlertOnly with FreezeOnAlert: %v", err)
	}
}

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
