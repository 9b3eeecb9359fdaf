package vault

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/audit"
)

type alertLog struct {
	mu     sync.Mutex
	alerts []Alert
}

func (l *alertLog) add(a Alert) {
	l.mu.Lock()
	l.alerts = append(l.alerts, a)
	l.mu.Unlock()
}

func (l *alertLog) kinds() []AlertKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []AlertKind
	for _, a := range l.alerts {
		out = append(out, a.Kind)
	}
	return out
}

func newAbuseVault(t *testing.T, q Quota, freeze bool) (*testVault, *memstore.Store, *alertLog) {
	st := memstore.New()
	al := &alertLog{}
	v := openTestVault(t, st, testKEK(t), func(c *Config) {
		c.Detection.Quota = q
		c.Detection.OnAlert = al.add
		c.Detection.AlertOnly = !freeze
	})
	return v, st, al
}

func TestGrantQuota(t *testing.T) {
	v, st, al := newAbuseVault(t, Quota{Documents: 5, Burst: 100}, false)
	var ids []string
	for i := range 7 {
		ids = append(ids, putImage(t, v, image(100+i, ""), "m").ID)
	}
	ctx := context.Background()
	for i := range 5 {
		grant(t, v, ids[i], "r")
	}
	// Every grant counts, also one of a document granted before: a count
	// of distinct documents would need a set per principal and window.
	if _, err := v.Grant(ctx, ids[0], Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("6th grant: %v, want ErrQuotaExceeded", err)
	}
	if _, err := v.Grant(ctx, ids[6], Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("7th: %v", err)
	}
	if got := al.kinds(); !slices.Equal(got, []AlertKind{AlertQuota}) {
		t.Fatalf("alerts %v, want one quota alert", got)
	}
	grant(t, v, ids[5], "other-reviewer")             // quotas are per principal
	v.clock.Advance(DefaultQuotaWindow + time.Minute) // windows are read in whole minutes
	grant(t, v, ids[5], "r")                          // the window slid
	n := 0
	for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventAlert}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Reason == string(AlertQuota) && r.Principal == "r" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d quota alerts audited", n)
	}
}

// TestRedeemQuota: Quota.Redemptions is counted when tokens are granted
// (each redeems once): the grant past it is refused, and a redemption
// writes no count of its own.
func TestRedeemQuota(t *testing.T) {
	v, _, al := newAbuseVault(t, Quota{Redemptions: 3, Documents: 100, Burst: 100}, false)
	info := putImage(t, v, image(100, ""), "m")
	for i := range 4 {
		g, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "age-check"})
		if i == 3 {
			if !errors.Is(err, ErrQuotaExceeded) {
				t.Fatalf("grant %d past Redemptions: %v, want ErrQuotaExceeded", i, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
		if _, err := redeemAll(v, g.Token, "r"); err != nil {
			t.Fatalf("redemption %d: %v", i, err)
		}
	}
	if got := al.kinds(); !slices.Contains(got, AlertQuota) {
		t.Fatalf("alerts %v", got)
	}
}

func TestBulkAndProbingAlerts(t *testing.T) {
	v, _, al := newAbuseVault(t, Quota{Burst: 4, Documents: 100}, false)
	for i := range 4 {
		grant(t, v, putImage(t, v, image(100+i, ""), "m").ID, "script")
		v.clock.Advance(300 * time.Millisecond)
	}
	if got := al.kinds(); len(got) != 0 {
		t.Fatalf("alert on reaching the threshold (not crossing it): %v", got)
	}
	for i := range 3 { // the 5th crosses it; the 6th and 7th do not alert again
		grant(t, v, putImage(t, v, image(100+i, ""), "m").ID, "script")
		v.clock.Advance(300 * time.Millisecond)
	}
	if got := al.kinds(); !slices.Equal(got, []AlertKind{AlertBulk}) {
		t.Fatalf("after a burst: %v", got)
	}
	for range DefaultProbeThreshold + 3 {
		v.Redeem(context.Background(), "idv1_forged", Requester{Principal: "prober", RemoteAddr: "203.0.113.9:4000"})
	}
	n := 0
	for _, k := range al.kinds() {
		if k == AlertProbing {
			n++
		}
	}
	if n != 2 { // one for the principal, one for the address
		t.Fatalf("probing alerts: %v", al.kinds())
	}
}

func TestCanaries(t *testing.T) {
	v, st, al := newAbuseVault(t, Quota{}, true)
	real := putImage(t, v, image(300<<10, ""), "m")
	cs, err := v.Admin().PlantCanaries(context.Background(), 3)
	if err != nil || len(cs) != 3 {
		t.Fatal(len(cs), err)
	}
	// From storage a canary looks like any document: same key layout,
	// same key-record size, a payload of a plausible size.
	rid, _ := parseObjectID(real.ID)
	realRec, _ := st.Bytes(keyRecordKey(rid))
	for _, c := range cs {
		id, _ := parseObjectID(c.ID)
		rec, ok := st.Bytes(keyRecordKey(id))
		if !ok || len(rec) != len(realRec) {
			t.Fatalf("canary key record %d bytes, real %d", len(rec), len(realRec))
		}
		if _, ok := st.Bytes(blobKey(id)); !ok {
			t.Fatal("canary without payload")
		}
		if c.Size < 200<<10 || c.Size > 400<<10 {
			t.Fatalf("canary size %d far from the real documents'", c.Size)
		}
	}
	g := grant(t, v, cs[0].ID, "insider")
	if got := al.kinds(); len(got) == 0 || got[0] != AlertCanary {
		t.Fatalf("grant of a canary: alerts %v", got)
	}
	// The alert froze the insider: the already-issued token is refused too.
	if _, err := redeemAll(v, g.Token, "insider"); !errors.Is(err, ErrFrozen) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("frozen principal redeemed: %v", err)
	}
	if _, err := v.Grant(context.Background(), real.ID, Access{Principal: "insider", Purpose: "p"}); !errors.Is(err, ErrFrozen) {
		t.Fatalf("frozen principal granted: %v", err)
	}
	if err := v.Admin().Unfreeze(context.Background(), "insider", Actor{Principal: "security-1", Reason: "false alarm, ticket 12"}); err != nil {
		t.Fatal(err)
	}
	grant(t, v, real.ID, "insider") // unfrozen
	_ = al

	// Without freezing: a redemption of a canary alerts too, and the decoy
	// is served like any image.
	v2, _, al2 := newAbuseVault(t, Quota{}, false)
	putImage(t, v2, image(300<<10, ""), "m")
	cs2, err := v2.Admin().PlantCanaries(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	g = grant(t, v2, cs2[0].ID, "insider")
	body, err := redeemAll(v2, g.Token, "insider")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
		t.Fatalf("canary does not decode as a JPEG: %v", err)
	}
	if got := al2.kinds(); !slices.Equal(got, []AlertKind{AlertCanary, AlertCanary}) {
		t.Fatalf("canary alerts on grant and redeem: %v", got)
	}
}

// TestRefusalTiming: over HTTP, every refusal class takes about as long as
// every other, so timing tells a prober nothing.
func TestRefusalTiming(t *testing.T) {
	// Alerts only: the classes' refusals from "r" would otherwise freeze it
	// (refusal-burst) before the last class is measured.
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) { c.Detection.AlertOnly = true })
	// A floor well above what any refusal path costs even under -race on a
	// busy CI machine, so the test checks the mechanism, not the machine.
	const floor = 120 * time.Millisecond
	srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, RefusalFloor: floor}))
	defer srv.Close()
	info := putImage(t, v, image(20<<10, ""), "m")
	gone := putImage(t, v, image(20<<10, ""), "m")
	goneToken := grant(t, v, gone.ID, "r").Token
	if err := v.Admin().Delete(context.Background(), gone.ID, Actor{Principal: "operator-1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	spent := grant(t, v, info.ID, "r").Token
	if _, err := redeemAll(v, spent, "r"); err != nil {
		t.Fatal(err)
	}
	classes := map[string]func() (string, string){
		"forged":          func() (string, string) { return "idv1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "r" },
		"replayed":        func() (string, string) { return spent, "r" },
		"wrong-principal": func() (string, string) { return grant(t, v, info.ID, "r").Token, "x" },
		"deleted":         func() (string, string) { return goneToken, "r" },
	}
	// Interleaved, class after class in each round, after a warm-up in
	// which the floor learns the slowest path: a load spike then falls on
	// every class alike instead of on the one measured at that moment.
	names := slices.Sorted(maps.Keys(classes))
	measure := func(name string) time.Duration {
		tok, p := classes[name]()
		start := time.Now()
		code, err := fetch(http.DefaultClient, srv.URL+"/"+tok, p)
		if err != nil {
			t.Fatal(err)
		}
		if code != 404 {
			t.Fatalf("%s: %d", name, code)
		}
		return time.Since(start)
	}
	for range 3 {
		for _, name := range names {
			measure(name)
		}
	}
	const rounds = 7
	samples := map[string][]time.Duration{}
	for r := range rounds {
		for i := range names {
			name := names[(i+r)%len(names)]
			samples[name] = append(samples[name], measure(name))
		}
	}
	medians := map[string]time.Duration{}
	for name, ds := range samples {
		slices.Sort(ds)
		medians[name] = ds[len(ds)/2]
	}
	lo, hi := time.Hour, time.Duration(0)
	for _, d := range medians {
		lo, hi = min(lo, d), max(hi, d)
	}
	t.Logf("median refusal times: %v (spread %v)", medians, hi-lo)
	if lo < floor {
		t.Fatalf("a refusal beat the floor: %v", medians)
	}
	if hi-lo > 15*time.Millisecond {
		t.Fatalf("refusal classes differ by %v: %v", hi-lo, medians)
	}
}

// TestFrozenBeforeRelease: a principal frozen after its quota check (a
// canary it touched in a parallel request, an alert on another instance)
// is refused by the last check before the first byte leaves.
func TestFrozenBeforeRelease(t *testing.T) {
	v, _, _ := newAbuseVault(t, Quota{}, true)
	ctx := context.Background()
	if err := v.checkFrozenBeforeRelease(ctx, "insider"); err != nil {
		t.Fatalf("not frozen: %v", err)
	}
	v.alert(ctx, Alert{Kind: AlertCanary, Principal: "insider"}) // raised elsewhere meanwhile
	if err := v.checkFrozenBeforeRelease(ctx, "insider"); !errors.Is(err, ErrFrozen) {
		t.Fatalf("frozen principal passed the release check: %v", err)
	}
	if err := v.checkFrozenBeforeRelease(ctx, "colleague"); err != nil {
		t.Fatalf("another principal: %v", err)
	}
}

// TestUndecidedViews: a principal that opens documents slowly (well under
// every rate threshold) and decides none raises AlertUndecided before it
// has seen 50; one that decides each within minutes never does.
func TestUndecidedViews(t *testing.T) {
	v, _, al := newAbuseVault(t, Quota{}, false)
	ctx := context.Background()
	var ids []string
	for i := range 90 {
		ids = append(ids, putImage(t, v, image(100+i, ""), "m").ID)
	}
	for i, id := range ids[:30] { // honest: 30 an hour, each viewed and decided 2 min later, one in three handed on
		if _, err := redeemAll(v, grant(t, v, id, "honest").Token, "honest"); err != nil {
			t.Fatal(err)
		}
		v.clock.Advance(2 * time.Minute)
		verdict := Approved
		if i%3 == 0 {
			verdict = HandedOn
		}
		if err := v.Decide(ctx, id, Decision{Verdict: verdict}, Actor{Principal: "honest"}); err != nil {
			t.Fatal(err)
		}
	}
	ids = ids[30:]
	if got := al.kinds(); len(got) != 0 {
		t.Fatalf("honest reviewer raised %v", got)
	}
	seen := 0
	for _, id := range ids {
		grant(t, v, id, "thief")
		seen++
		v.clock.Advance(time.Hour / 199)
		if slices.Contains(al.kinds(), AlertUndecided) {
			break
		}
	}
	if !slices.Contains(al.kinds(), AlertUndecided) || seen >= 50 {
		t.Fatalf("thief at 199/h: alerts %v after %d documents", al.kinds(), seen)
	}
	t.Logf("undecided alert after %d documents at 199/h", seen)
	// Decisions about made-up documents do not offset views.
	if err := v.Decide(ctx, "00000000000000000000000000000000", Decision{Verdict: HandedOn}, Actor{Principal: "thief"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("decision about an absent document: %v", err)
	}
	if err := v.Decide(ctx, ids[40], Decision{Verdict: "maybe"}, Actor{Principal: "thief"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown verdict: %v", err)
	}
	if err := v.Decide(ctx, ids[40], Decision{Verdict: Approved}, Actor{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no actor: %v", err)
	}
	if _, err := redeemAll(v, grant(t, v, ids[40], "r").Token, "r"); err != nil {
		t.Fatal(err)
	}
	if err := v.Decide(ctx, ids[40], Decision{Verdict: Approved, Note: "ok"}, Actor{Principal: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Grant(ctx, ids[40], Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an approved document was not deleted: %v", err)
	}
}
