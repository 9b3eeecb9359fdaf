package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/vaulttest"
)

// The 2021 incident, replayed against idvault: a stolen reviewer identity
// fetches ID images in bulk at the attacker's rate (1.71 M images in six
// days: about 3.3 a second). An injected clock makes hours pass in seconds.
//
//	make replay   (go test -count=1 -v -run Replay ./vault/)
const (
	attackRate      = 300 * time.Millisecond // ≈ 3.3 requests a second
	legitReviewers  = 3
	legitEvery      = 40 * time.Second // a human reviewer: one document every 40 s
	legitDuration   = 90 * time.Minute
	stolenPrincipal = "reviewer-3"
)

// replayClock is the replay's manual clock (vaulttest.Clock).
type replayClock = vaulttest.Clock

// clockAt returns a replayClock at t.
func clockAt(t time.Time) *replayClock {
	c := vaulttest.NewClock()
	c.Set(t)
	return c
}

type replayWorld struct {
	v        *vault.Vault
	st       *fsstore.Store
	clock    *replayClock
	docs     []string
	canaries []string
	mu       sync.Mutex
	alerts   []vault.Alert
}

// replayDocs is how many members upload: 5,000 (1,000 under -race, where
// each upload costs ten times as much).
var replayDocs = map[bool]int{false: 5000, true: 1000}[raceEnabled]

// newReplayWorld opens a vault with the defaults (AlertOnly: the opt-out)
// on the filesystem store, where replayDocs members upload their ID images
// over the morning, one a second; the vault plants its canaries among them.
func newReplayWorld(t *testing.T, alertOnly bool) *replayWorld {
	w := &replayWorld{clock: clockAt(time.Date(2021, 4, 20, 7, 0, 0, 0, time.UTC))}
	st, err := fsstore.OpenWithOptions(t.TempDir(), fsstore.Options{Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	w.st = st
	w.v, err = vault.Open(context.Background(), vault.Config{
		Store: st,
		KEK:   kektest.New(t),
		Now:   w.clock.Now,
		Detection: vault.DetectionConfig{
			AlertOnly: alertOnly,
			OnAlert:   func(a vault.Alert) { w.mu.Lock(); w.alerts = append(w.alerts, a); w.mu.Unlock() },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.v.Close(context.Background()) })
	img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 2048)...)
	w.docs = make([]string, replayDocs)
	// Eight upload at once, then the clock moves on by a second each: it
	// never moves while a Put is in flight, or a Put could see its
	// clock-check's two readings (the store's and its own, both this
	// clock) seconds apart and refuse with ErrClockSkew.
	for start := 0; start < replayDocs; start += 8 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := start; i < min(start+8, replayDocs); i++ {
			wg.Go(func() {
				info, err := w.v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprintf("member-%d", i)})
				if err != nil {
					errs <- err
					return
				}
				w.docs[i] = info.ID
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		w.clock.Advance(8 * time.Second)
	}
	w.clock.Advance(time.Hour)
	vault.PlantDue(w.v)
	// The canaries a listing of the queue holds.
	listed, err := w.v.MixCanaries(context.Background(), w.docs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range listed {
		if !slices.Contains(w.docs, id) {
			w.canaries = append(w.canaries, id)
		}
	}
	if len(w.canaries) == 0 {
		t.Fatalf("no canary planted among %d uploads", replayDocs)
	}
	return w
}

// fetch is one grant and redemption, as the app's review page does it.
func (w *replayWorld) fetch(principal, remote, id string) error {
	ctx := context.Background()
	g, err := w.v.Grant(ctx, id, vault.Access{Principal: principal, Purpose: "age-check"})
	if err != nil {
		return err
	}
	rc, _, err := w.v.Redeem(ctx, g.Token, vault.Requester{Principal: principal, RemoteAddr: remote})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func (w *replayWorld) firstAlertAfter(t0 time.Time) (vault.Alert, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.alerts {
		if !a.Time.Before(t0) {
			return a, true
		}
	}
	return vault.Alert{}, false
}

type replayFigures struct {
	exposed        map[string]bool
	exposedAtAlert int
	secondsToAlert float64
	alertKind      vault.AlertKind
	requests       int
}

// attack runs the bulk download from t0 until the principal has been
// refused 50 times in a row, with docs in the order given.
func (w *replayWorld) attack(t *testing.T, order []string) replayFigures {
	f := replayFigures{exposed: map[string]bool{}, exposedAtAlert: -1}
	t0 := w.clock.Now()
	refusedInARow := 0
	for i, id := range order {
		if refusedInARow >= 50 {
			break
		}
		w.clock.Advance(attackRate)
		remote := fmt.Sprintf("198.51.100.%d:%d", 1+i%200, 40000+i%1000) // spread over many addresses
		f.requests++
		err := w.fetch(stolenPrincipal, remote, id)
		switch {
		case err == nil:
			if !slices.Contains(w.canaries, id) {
				f.exposed[id] = true
			}
			refusedInARow = 0
		case errors.Is(err, vault.ErrQuotaExceeded):
			refusedInARow++
		default:
			t.Fatalf("attack request %d: %v", i, err)
		}
		if a, ok := w.firstAlertAfter(t0); ok && f.exposedAtAlert < 0 {
			f.exposedAtAlert = len(f.exposed)
			f.secondsToAlert = a.Time.Sub(t0).Seconds()
			f.alertKind = a.Kind
		}
	}
	return f
}

// legit is the reviewers' normal day before the attack: no alert may fire.
func (w *replayWorld) legit(t *testing.T) {
	next := 0
	for elapsed := time.Duration(0); elapsed < legitDuration; elapsed += legitEvery {
		w.clock.Advance(legitEvery)
		for r := range legitReviewers {
			id := w.docs[next]
			next++
			p := fmt.Sprintf("reviewer-%d", r+1)
			if err := w.fetch(p, "192.0.2.10:443", id); err != nil {
				t.Fatalf("legitimate review: %v", err)
			}
			// A reviewer decides what it opened (the detector counts views
			// without decisions).
			if err := w.v.Decide(context.Background(), id, vault.Decision{Verdict: vault.Approved}, vault.Actor{Principal: p, Reason: "age checked"}); err != nil {
				t.Fatalf("decide: %v", err)
			}
		}
	}
	if len(w.alerts) != 0 {
		t.Fatalf("legitimate workload raised alerts: %v", w.alerts)
	}
}

// forensics asks the audit log which documents the stolen identity took
// since the attack began, as a security team would (audit.Scan; the CLI's
// `idvault audit query` reads the same records).
func (w *replayWorld) forensics(t *testing.T, since time.Time) map[string]bool {
	// Closing the vault seals its log, as after an incident.
	if err := w.v.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for r, err := range audit.Scan(context.Background(), w.st, audit.Filter{Principal: stolenPrincipal, Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Since: since}) {
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(w.canaries, r.Object) {
			got[r.Object] = true
		}
	}
	return got
}

func precisionRecall(listed, exposed map[string]bool) (float64, float64) {
	tp := 0
	for id := range listed {
		if exposed[id] {
			tp++
		}
	}
	if len(listed) == 0 || len(exposed) == 0 {
		return 0, 0
	}
	return float64(tp) / float64(len(listed)), float64(tp) / float64(len(exposed))
}

func TestReplayIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("the replay puts thousands of documents; skipped with -short")
	}
	for _, alertOnly := range []bool{false, true} {
		name := "defaults"
		if alertOnly {
			name = "AlertOnly"
		}
		t.Run(name, func(t *testing.T) {
			w := newReplayWorld(t, alertOnly)
			w.legit(t)
			w.clock.Advance(time.Hour) // the owner of reviewer-3 went home
			start := w.clock.Now()
			// The attacker walks the documents in order, skipping canaries
			// (the worst case for us: canaries are tested separately below).
			f := w.attack(t, w.docs[500:]) // past what the reviewers decided (and deleted)
			quota := vault.DefaultQuotaDocuments
			listed := w.forensics(t, start)
			p, r := precisionRecall(listed, f.exposed)
			t.Logf("replay (%s): %d requests at 3.3/s; %d documents exposed before refusal (quota %d); "+
				"first alert %q after %.1f simulated s, at %d exposed; the audit log lists %d: precision %.0f%%, recall %.0f%%",
				name, f.requests, len(f.exposed), quota, f.alertKind, f.secondsToAlert, f.exposedAtAlert, len(listed), 100*p, 100*r)
			if len(f.exposed) > quota {
				t.Errorf("exposed %d > quota %d", len(f.exposed), quota)
			}
			if f.exposedAtAlert < 0 || f.exposedAtAlert >= quota {
				t.Errorf("no alert before the quota was exhausted (alert at %d)", f.exposedAtAlert)
			}
			if !alertOnly && len(f.exposed) > vault.DefaultBurst {
				t.Errorf("with the defaults, %d exposed; want at most the burst threshold", len(f.exposed))
			}
			if p != 1 || r != 1 {
				t.Errorf("audit log precision %.2f recall %.2f, want 1 and 1", p, r)
			}
		})
	}
	t.Run("canary", func(t *testing.T) {
		w := newReplayWorld(t, true)
		start := w.clock.Now()
		canary := w.canaries[rand.IntN(len(w.canaries))]
		// The attacker's third request happens to be a canary.
		order := []string{w.docs[10], w.docs[11], canary, w.docs[12]}
		for range 3 {
			order = append(order, w.docs[rand.IntN(len(w.docs))])
		}
		f := w.attack(t, order)
		t.Logf("replay (canary third): first alert %q after %.1f simulated s, at %d exposed", f.alertKind, f.secondsToAlert, f.exposedAtAlert)
		if f.alertKind != vault.AlertCanary || f.exposedAtAlert != 2 {
			t.Fatalf("canary: first alert %q at %d exposed; want canary-touched on the third request", f.alertKind, f.exposedAtAlert)
		}
		listed := w.forensics(t, start)
		if p, r := precisionRecall(listed, f.exposed); p != 1 || r != 1 {
			t.Errorf("audit log precision %.2f recall %.2f", p, r)
		}
	})
}

// TestReplayStrategies replays every strategy of issues 14 and 22 against
// the public API, and an honest review team, with the defaults (a Config
// with Store and KEK: alerts freeze, canaries planted and listed), with
// the opt-out (AlertOnly) and with the defaults but no canaries, on an
// in-memory store with an injected clock, and prints the table
// docs/abuse.md carries:
//
//	make replay   (go test -count=1 -v -run Replay ./vault/)
//
// The attacker walks the review queue's listing, which the app passes
// through Vault.MixCanaries; honest reviewers are assigned documents from
// the app's records and decide each within minutes (approve or reject, as
// the sample app does). Under -race the corpus and the simulated span are
// smaller (600 documents, 6 hours, the defaults only); `make replay` runs
// the full 5,000 documents over 6 days in every mode.
func TestReplayStrategies(t *testing.T) {
	if testing.Short() {
		t.Skip("the replay simulates days of traffic; skipped with -short")
	}
	cfg := simConfig{docs: 5000, span: 6 * 24 * time.Hour}
	modes := []struct {
		name              string
		alertOnly, canary bool
	}{{"defaults", false, true}, {"AlertOnly", true, true}, {"defaults, no canaries", false, false}}
	if raceEnabled {
		// 10× slower: the defaults only, on a smaller corpus and span.
		cfg = simConfig{docs: 600, span: 6 * time.Hour}
		modes = modes[:1]
	}
	if d, err := time.ParseDuration(os.Getenv("REPLAY_SPAN")); err == nil {
		cfg.span = d
	}
	kek := kektest.New(t)
	base := buildCorpus(t, kek, cfg.docs)
	strategies := []strategy{
		{name: "greedy 3.3/s", ids: 1, every: 300 * time.Millisecond},
		{name: "greedy, resuming 1 h after each refusal", ids: 1, every: 300 * time.Millisecond, resume: time.Hour},
		{name: "29 documents per 5 min", ids: 1, every: 5 * time.Minute / 29, resume: time.Hour},
		{name: "199 per hour, sustained", ids: 1, every: time.Hour / 199, resume: time.Hour},
		{name: "24 per 5 min (under the burst threshold)", ids: 1, every: 5 * time.Minute / 24, resume: time.Hour},
		{name: "5 identities, greedy", ids: 5, every: 300 * time.Millisecond},
		{name: "5 identities × 199/h", ids: 5, every: time.Hour / 199, resume: time.Hour},
		{name: "3 instances, default limiter, 597/h", ids: 1, instances: 3, every: time.Hour / 597, resume: time.Hour},
		{name: "3 instances, in-process limiters (explicit opt-out), 597/h", ids: 1, instances: 3, local: true, every: time.Hour / 597, resume: time.Hour},
		{name: "9 garbage tokens per 5 min, then 199/h", ids: 1, every: time.Hour / 199, resume: time.Hour, garbage: true},
		{name: "100 simultaneous grant+redeem", ids: 1, parallel: 100},
		{name: "approves what it views, 110/h (an honest reviewer's pace)", ids: 1, every: time.Hour / 110, resume: time.Hour, verdict: vault.Approved},
		{name: "hands on what it views, 199/h", ids: 1, every: time.Hour / 199, resume: time.Hour, verdict: vault.HandedOn},
		{name: "approves without viewing, 3.3/s", ids: 1, every: 300 * time.Millisecond, resume: time.Hour, verdict: vault.Approved, unviewed: true},
		{name: "5 identities approve without viewing, 3.3/s", ids: 5, every: 300 * time.Millisecond, resume: time.Hour, verdict: vault.Approved, unviewed: true},
	}
	type row struct {
		name string
		res  [3]simResult // defaults, AlertOnly, defaults without canaries
	}
	var rows []row
	for _, s := range strategies {
		if only := os.Getenv("REPLAY_ONLY"); only != "" && !strings.Contains(s.name, only) {
			continue
		}
		var r row
		r.name = s.name
		for i, m := range modes {
			w := newSimWorld(t, base, kek, m.alertOnly, s.instances, s.local, m.canary)
			start := time.Now()
			r.res[i] = w.runAttack(t, s, cfg.span)
			res := r.res[i]
			t.Logf("%s (%s): %v wall, %d exposed (most %d by one identity), %d destroyed, first alert %s", s.name, m.name,
				time.Since(start).Round(time.Millisecond), res.atEnd, res.maxPerID, res.destroyed, res.alertCell())
			if res.falseAlerts != 0 {
				t.Errorf("%s (%s): %d alerts named an honest principal", s.name, m.name, res.falseAlerts)
			}
			if s.local || !m.canary {
				continue // the explicit opt-out of shared counts, and no canaries: shown for comparison, no target
			}
			if res.firstAlert < 0 {
				t.Errorf("%s (%s): no alert", s.name, m.name)
			} else if res.maxAtAlert >= 50 {
				t.Errorf("%s (%s): first alert after one identity saw %d documents (target < 50)", s.name, m.name, res.maxAtAlert)
			}
			if !m.alertOnly && (res.maxPerID > 50 || res.maxDestroyed > 50) {
				t.Errorf("%s with the defaults: one identity saw %d documents and destroyed %d (target <= 50)", s.name, res.maxPerID, res.maxDestroyed)
			}
		}
		rows = append(rows, r)
	}
	var honest [2]simResult
	for i, alertOnly := range []bool{false, true} {
		if alertOnly && raceEnabled {
			break // the honest team raises no alert either way
		}
		w := newSimWorld(t, base, kek, alertOnly, 1, false, true)
		start := time.Now()
		honest[i] = w.runHonest(t, cfg.span)
		t.Logf("honest (AlertOnly=%v): %v wall, %d views, %d decisions, alerts %v", alertOnly, time.Since(start).Round(time.Millisecond), honest[i].views, honest[i].decisions, honest[i].alertKinds)
		if honest[i].falseAlerts != 0 {
			t.Errorf("honest team (AlertOnly=%v): %d alerts: %v", alertOnly, honest[i].falseAlerts, honest[i].alertKinds)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nReplay: %d documents, %s simulated. \"Defaults\" is a Config with only Store and KEK: alerts freeze, canaries are planted and listed; AlertOnly is the opt-out.\n\n", cfg.docs, short(cfg.span))
	fmt.Fprintf(&b, "| strategy | defaults: exposed 1 h / 24 h / %s (most by one identity) | defaults: first alert (kind, when, most seen by one identity then) | defaults: destroyed | AlertOnly: exposed 1 h / 24 h / %s | AlertOnly: first alert | AlertOnly: destroyed | defaults, no canaries: exposed (most by one identity), destroyed, first alert | false alerts |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n", short(cfg.span), short(cfg.span))
	for _, r := range rows {
		d, o, n := r.res[0], r.res[1], r.res[2]
		fmt.Fprintf(&b, "| %s | %d / %d / %d (%d) | %s | %d | %d / %d / %d | %s | %d | %d (%d), %d, %s | %d |\n", r.name,
			d.at1h, d.at24h, d.atEnd, d.maxPerID, d.alertCell(), d.destroyed,
			o.at1h, o.at24h, o.atEnd, o.alertCell(), o.destroyed,
			n.atEnd, n.maxPerID, n.destroyed, n.alertCell(), d.falseAlerts+o.falseAlerts+n.falseAlerts)
	}
	h := honest[0]
	fmt.Fprintf(&b, "| honest team: 5 reviewers, 8-h shifts, 40–120/h, approve or reject within minutes; auditor 20 at once daily | %d views, %d decisions | %s | — | — | — | — | — | %d |\n",
		h.views, h.decisions, h.alertCell(), honest[0].falseAlerts+honest[1].falseAlerts)
	t.Log(b.String())
	if p := os.Getenv("REPLAY_TABLE"); p != "" {
		os.WriteFile(p, []byte(b.String()), 0o644)
	}
}

func short(d time.Duration) string {
	if d < 24*time.Hour {
		return d.String()
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

type simConfig struct {
	docs int
	span time.Duration
}

type strategy struct {
	name      string
	ids       int           // stolen identities
	instances int           // vault instances the attacker spreads over (default 1)
	local     bool          // instances use in-process limiters (the explicit opt-out)
	every     time.Duration // per identity, between documents
	resume    time.Duration // after a refusal, wait this long; 0: give up after 50 refusals in a row
	garbage   bool          // 9 garbage tokens per 5 min during the first hour, then documents
	parallel  int           // one burst of this many simultaneous grant+redeem
	verdict   vault.Verdict // decide each document taken (or, with unviewed, listed) so
	unviewed  bool          // decide without viewing: no grant, only Decide
}

type simResult struct {
	at1h, at24h, atEnd int
	perID              map[string]int
	maxPerID           int
	destroyed          int           // real documents the attacker's decisions deleted
	maxDestroyed       int           // most by one identity
	firstAlert         time.Duration // -1: none
	firstKind          vault.AlertKind
	maxAtAlert         int // most documents any one identity had seen at the first alert
	falseAlerts        int
	alertKinds         []vault.AlertKind
	views, decisions   int
}

func (r simResult) alertCell() string {
	if r.firstAlert < 0 {
		return "none"
	}
	return fmt.Sprintf("%s after %s, at %d", r.firstKind, r.firstAlert.Round(100*time.Millisecond), r.maxAtAlert)
}

// buildCorpus uploads n documents once, over the day before the replay
// (members arriving at random, one in three with a second document a few
// seconds later), so that the vault plants its canaries among them as it
// would; every world starts from a copy.
func buildCorpus(t *testing.T, kek kms.KEK, n int) *memstore.Store {
	st := memstore.New()
	clock := clockAt(time.Date(2021, 4, 19, 9, 0, 0, 0, time.UTC))
	st.Now = clock.Now // the store's clock (store.Clock) is the simulation's
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek, Now: clock.Now, Retention: vault.RetentionConfig{Period: 8 * 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	gap := 24 * time.Hour / time.Duration(n)
	for i := 0; i < n; {
		clock.Advance(time.Duration(rand.ExpFloat64() * float64(gap)))
		docs := 1
		if rand.IntN(3) == 0 {
			docs = 2
		}
		for d := range min(docs, n-i) {
			if d > 0 {
				clock.Advance(time.Duration(2+rand.IntN(10)) * time.Second)
			}
			size := 1024 + int(math.Exp(6+0.5*rand.NormFloat64()))
			img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, size)...)
			if _, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprintf("member-%d", i)}); err != nil {
				t.Fatal(err)
			}
			i++
		}
	}
	clock.Set(time.Date(2021, 4, 20, 9, 0, 0, 0, time.UTC))
	vault.PlantDue(v)
	if err := v.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

type simWorld struct {
	st       *memstore.Store
	clock    *replayClock
	vs       []*vault.Vault
	docs     []string // the app's records: real documents, oldest first
	mu       sync.Mutex
	alerts   []vault.Alert
	t0       time.Time
	attacker map[string]bool
	// seen counts documents served per attacking identity (under mu), and
	// seenAtAlert the most any one had seen when each alert was raised.
	seen        map[string]int
	seenAtAlert []int
	real        map[string]bool
}

func (w *simWorld) served(p string) {
	w.mu.Lock()
	w.seen[p]++
	w.mu.Unlock()
}

func newSimWorld(t *testing.T, base *memstore.Store, kek kms.KEK, alertOnly bool, instances int, local bool, canaries bool) *simWorld {
	st := memstore.New()
	for _, k := range base.Keys() {
		b, _ := base.Bytes(k)
		st.SetBytes(k, b)
	}
	w := &simWorld{st: st, clock: clockAt(time.Date(2021, 4, 20, 9, 0, 0, 0, time.UTC)), attacker: map[string]bool{}, seen: map[string]int{}, real: map[string]bool{}}
	w.t0 = w.clock.Now()
	st.Now = w.clock.Now
	// The instances share one Counter, as they share the store limiter by
	// default: the same contract (vault/detect/countertest), kept in
	// memory so six simulated days run in seconds. The store limiter
	// itself is tested on MinIO (TestBurstFreezeExact, the conformance
	// suite). The opt-out row gives each instance its own.
	shared := vault.NewMemoryLimiter()
	for range max(instances, 1) {
		cfg := vault.Config{
			Store: st,
			KEK:   kek,
			Now:   w.clock.Now,
			Retention: vault.RetentionConfig{
				Period: 8 * 24 * time.Hour,
			},
			Detection: vault.DetectionConfig{
				AlertOnly: alertOnly,
				OnAlert: func(a vault.Alert) {
					w.mu.Lock()
					w.alerts = append(w.alerts, a)
					most := 0
					for _, n := range w.seen {
						most = max(most, n)
					}
					w.seenAtAlert = append(w.seenAtAlert, most)
					w.mu.Unlock()
				},
			},
		}
		cfg.Detection.Limiter, cfg.Detection.AllowLocalLimiter = shared, true
		if !canaries {
			cfg.Detection.CanaryRate = -1
		}
		if local {
			cfg.Detection.Limiter = vault.NewMemoryLimiter()
		}
		v, err := vault.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close(context.Background()) })
		w.vs = append(w.vs, v)
	}
	// The app's records: what members uploaded (never a canary).
	for _, k := range st.Keys() {
		if id, ok := strings.CutPrefix(k, "keys/"); ok && !vault.IsCanary(w.vs[0], id) {
			w.docs = append(w.docs, id)
			w.real[id] = true
		}
	}
	rand.Shuffle(len(w.docs), func(i, j int) { w.docs[i], w.docs[j] = w.docs[j], w.docs[i] })
	return w
}

func (w *simWorld) fetch(v *vault.Vault, principal, id string) error {
	ctx := context.Background()
	g, err := v.Grant(ctx, id, vault.Access{Principal: principal, Purpose: "age-check"})
	if err != nil {
		return err
	}
	rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: principal, RemoteAddr: "198.51.100.7:4000"})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// actor is one simulated participant: act runs at next and returns the
// next time (zero: done).
type actor struct {
	next time.Time
	act  func(now time.Time) time.Time
}

// run is a discrete-event loop over the actors until end; before is
// called before each action, with its time, and after it.
func (w *simWorld) run(actors []*actor, end time.Time, before, after func(now time.Time)) {
	for {
		var a *actor
		for _, x := range actors {
			if !x.next.IsZero() && (a == nil || x.next.Before(a.next)) {
				a = x
			}
		}
		if a == nil || a.next.After(end) {
			return
		}
		w.clock.Set(a.next)
		now := a.next
		before(now)
		a.next = a.act(now)
		after(now)
	}
}

func (w *simWorld) result(res *simResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.alerts {
		if a.Kind == vault.AlertFrozen {
			continue
		}
		res.alertKinds = append(res.alertKinds, a.Kind)
		if a.Principal != "" && !w.attacker[a.Principal] {
			res.falseAlerts++
		}
	}
}

// firstAlertSeen notes the first alert and what each identity had seen then.
func (w *simWorld) firstAlertSeen(res *simResult) {
	if res.firstAlert >= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, a := range w.alerts {
		if a.Principal != "" && !w.attacker[a.Principal] {
			continue // a false alert is counted elsewhere, not as detection
		}
		res.firstAlert, res.firstKind = a.Time.Sub(w.t0), a.Kind
		res.maxAtAlert = w.seenAtAlert[i]
		return
	}
}

func (w *simWorld) runAttack(t *testing.T, s strategy, span time.Duration) simResult {
	res := simResult{firstAlert: -1, perID: map[string]int{}}
	exposed := map[string]map[string]bool{}
	destroyed := map[string]int{}
	all := map[string]bool{}
	// The queue listing, in pages of 50, each through MixCanaries on the
	// instance that serves it.
	var queue []string
	for p := 0; p < len(w.docs); p += 50 {
		page, err := w.vs[(p/50)%len(w.vs)].MixCanaries(context.Background(), w.docs[p:min(p+50, len(w.docs))])
		if err != nil {
			t.Fatal(err)
		}
		queue = append(queue, page...)
	}
	if s.parallel > 0 {
		p := "reviewer-stolen-0"
		w.attacker[p] = true
		exposed[p] = map[string]bool{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, id := range queue[:s.parallel] {
			wg.Go(func() {
				if err := w.fetch(w.vs[0], p, id); err == nil && w.real[id] {
					w.served(p)
					mu.Lock()
					exposed[p][id] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		w.firstAlertSeen(&res)
		n := len(exposed[p])
		res.at1h, res.at24h, res.atEnd, res.maxPerID = n, n, n, n
		w.result(&res)
		return res
	}
	var actors []*actor
	next := 0 // shared cursor: identities split the queue
	for i := range s.ids {
		p := fmt.Sprintf("reviewer-stolen-%d", i)
		w.attacker[p] = true
		exposed[p] = map[string]bool{}
		refusedInARow := 0
		garbageLeft := 0
		if s.garbage {
			garbageLeft = 12 * 9 // an hour of 9 per 5 min
		}
		start := w.t0.Add(time.Duration(i) * time.Second)
		actors = append(actors, &actor{next: start, act: func(now time.Time) time.Time {
			v := w.vs[rand.IntN(len(w.vs))]
			ctx := context.Background()
			if garbageLeft > 0 {
				garbageLeft--
				v.Redeem(ctx, fmt.Sprintf("idv1_garbage%d", garbageLeft), vault.Requester{Principal: p, RemoteAddr: "198.51.100.7:4000"})
				return now.Add(5 * time.Minute / 9)
			}
			if next >= len(queue) {
				return time.Time{}
			}
			id := queue[next]
			next++
			var err error
			if !s.unviewed {
				err = w.fetch(v, p, id)
				if err == nil && w.real[id] {
					w.served(p)
					exposed[p][id] = true
					all[id] = true
				}
			}
			if err == nil && s.verdict != "" {
				err = v.Decide(ctx, id, vault.Decision{Verdict: s.verdict}, vault.Actor{Principal: p, Reason: "reviewed"})
				if err == nil && w.real[id] && s.verdict != vault.HandedOn {
					destroyed[p]++
				}
			}
			switch {
			case err == nil:
				refusedInARow = 0
				return now.Add(s.every)
			case errors.Is(err, vault.ErrFrozen):
				return time.Time{} // frozen: every request is refused from now on
			case errors.Is(err, vault.ErrQuotaExceeded):
				next-- // try this one again later
				refusedInARow++
				if s.resume > 0 {
					return now.Add(s.resume)
				}
				if refusedInARow >= 50 {
					return time.Time{}
				}
				return now.Add(s.every)
			case errors.Is(err, vault.ErrExpired), errors.Is(err, vault.ErrNotFound):
				return now.Add(s.every)
			case errors.Is(err, vault.ErrNotViewed):
				// Deciding what it never opened is refused (and counted):
				// it gives up after 50 refusals in a row.
				refusedInARow++
				if refusedInARow >= 50 {
					return time.Time{}
				}
				return now.Add(s.every)
			default:
				t.Fatalf("%s: %v", s.name, err)
				return time.Time{}
			}
		}})
	}
	marks := []struct {
		at  time.Duration
		dst *int
	}{{time.Hour, &res.at1h}, {24 * time.Hour, &res.at24h}}
	res.at1h, res.at24h = -1, -1
	w.run(actors, w.t0.Add(span), func(now time.Time) {
		for _, m := range marks {
			if *m.dst < 0 && now.After(w.t0.Add(m.at)) {
				*m.dst = len(all)
			}
		}
	}, func(time.Time) { w.firstAlertSeen(&res) })
	for _, m := range marks {
		if *m.dst < 0 {
			*m.dst = len(all)
		}
	}
	res.atEnd = len(all)
	for p, m := range exposed {
		res.perID[p] = len(m)
		res.maxPerID = max(res.maxPerID, len(m))
	}
	for _, n := range destroyed {
		res.destroyed += n
		res.maxDestroyed = max(res.maxDestroyed, n)
	}
	w.firstAlertSeen(&res)
	w.result(&res)
	return res
}

// runHonest: 5 reviewers on 8-hour shifts (two early, two late, one
// night), each 40–120 documents an hour, each approved (or, one in eight,
// rejected) 1–3 minutes after it was opened, as in the sample app;
// uploads at the rate of decisions; an auditor opening 20 documents at
// once once a day. No alert may fire.
func (w *simWorld) runHonest(t *testing.T, span time.Duration) simResult {
	res := simResult{firstAlert: -1}
	v := w.vs[0]
	ctx := context.Background()
	pool := append([]string(nil), w.docs...)
	take := func() string {
		if len(pool) == 0 {
			return ""
		}
		id := pool[0]
		pool = pool[1:]
		return id
	}
	img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 1200)...)
	type pending struct {
		id, by string
		at     time.Time
	}
	var decisions []pending
	var actors []*actor
	shiftStart := []int{6, 6, 14, 14, 22}
	for r := range 5 {
		p := fmt.Sprintf("reviewer-%d", r)
		rate := 40 + rand.IntN(81)
		inShift := func(now time.Time) bool {
			h := (now.Hour() - shiftStart[r] + 24) % 24
			return h < 8
		}
		actors = append(actors, &actor{next: w.t0, act: func(now time.Time) time.Time {
			if !inShift(now) {
				return now.Add(10 * time.Minute)
			}
			if now.Minute() == 0 {
				rate = 40 + rand.IntN(81) // each hour at its own pace
			}
			if id := take(); id != "" {
				if err := w.fetch(v, p, id); err != nil {
					t.Fatalf("honest review: %v", err)
				}
				res.views++
				decisions = append(decisions, pending{id, p, now.Add(time.Minute + time.Duration(rand.Int64N(int64(2*time.Minute))))})
			}
			return now.Add(time.Hour / time.Duration(rate))
		}})
	}
	// Decisions, and the uploads that keep the queue as long as it was.
	member := 0
	actors = append(actors, &actor{next: w.t0, act: func(now time.Time) time.Time {
		rest := decisions[:0]
		for _, d := range decisions {
			if d.at.After(now) {
				rest = append(rest, d)
				continue
			}
			verdict := vault.Approved
			if rand.IntN(8) == 0 {
				verdict = vault.Rejected
			}
			if err := v.Decide(ctx, d.id, vault.Decision{Verdict: verdict}, vault.Actor{Principal: d.by, Reason: "reviewed"}); err != nil && !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("decide: %v", err)
			}
			res.decisions++
			member++
			info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprint("new-member-", member)})
			if err != nil {
				t.Fatal(err)
			}
			pool = append(pool, info.ID)
		}
		decisions = rest
		return now.Add(15 * time.Second)
	}})
	// The auditor: 20 at once, every day at 11:00, no decisions.
	actors = append(actors, &actor{next: time.Date(2021, 4, 20, 11, 0, 0, 0, time.UTC), act: func(now time.Time) time.Time {
		for range 20 {
			if id := take(); id != "" {
				if err := w.fetch(v, "auditor", id); err != nil {
					t.Fatalf("audit: %v", err)
				}
				res.views++
				pool = append(pool, id) // back in the queue: the auditor only looked
			}
		}
		return now.Add(24 * time.Hour)
	}})
	w.run(actors, w.t0.Add(span), func(time.Time) {}, func(time.Time) {})
	w.result(&res)
	w.mu.Lock()
	for _, a := range w.alerts {
		if a.Kind != vault.AlertFrozen && a.Principal == "" {
			res.falseAlerts++ // a vault-wide alert on honest work is a false alert too
		}
	}
	w.mu.Unlock()
	if len(res.alertKinds) > 0 {
		res.firstAlert, res.firstKind = w.alerts[0].Time.Sub(w.t0), w.alerts[0].Kind
	}
	return res
}
