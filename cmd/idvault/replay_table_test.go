package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

// TestReplayStrategies replays every strategy of issue 14's table, and an
// honest review team, against the public API with the default
// configuration and with FreezeOnAlert, on an in-memory store with an
// injected clock, and prints the table the README carries:
//
//	make replay   (go test -count=1 -v -run Replay ./cmd/idvault/)
//
// The attacker walks the review queue's listing, which the app passes
// through Vault.MixCanaries (the default); honest reviewers are assigned
// documents from the app's records and decide each within minutes.
// Under -race the corpus and the simulated span are smaller (1,000
// documents, 12 hours, the honest team once) to keep the suite's time;
// `make replay` runs the full 5,000 documents over 6 days.
func TestReplayStrategies(t *testing.T) {
	if testing.Short() {
		t.Skip("the replay simulates days of traffic; skipped with -short")
	}
	cfg := simConfig{docs: 5000, span: 6 * 24 * time.Hour}
	if raceEnabled {
		cfg = simConfig{docs: 1000, span: 12 * time.Hour}
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
	}
	type row struct {
		name string
		res  [3]simResult // defaults, FreezeOnAlert, FreezeOnAlert without canaries
	}
	var rows []row
	for _, s := range strategies {
		if only := os.Getenv("REPLAY_ONLY"); only != "" && !strings.Contains(s.name, only) {
			continue
		}
		var r row
		r.name = s.name
		for i, freeze := range []bool{false, true, true} {
			w := newSimWorld(t, base, kek, freeze, s.instances, s.local, i < 2)
			start := time.Now()
			r.res[i] = w.runAttack(t, s, cfg.span)
			res := r.res[i]
			t.Logf("%s freeze=%v canaries=%v: %v wall, %d exposed, first alert %s", s.name, freeze, i < 2, time.Since(start).Round(time.Millisecond), res.atEnd, res.alertCell())
			if s.local {
				continue // the explicit opt-out: one count per instance, shown for comparison, no target
			}
			if res.firstAlert < 0 {
				t.Errorf("%s (freeze=%v): no alert", s.name, freeze)
			} else if res.maxAtAlert >= 50 {
				t.Errorf("%s (freeze=%v): first alert after one identity saw %d documents (target < 50)", s.name, freeze, res.maxAtAlert)
			}
			if freeze && res.maxPerID > 50 {
				t.Errorf("%s with FreezeOnAlert: one identity saw %d documents (target <= 50)", s.name, res.maxPerID)
			}
			if res.falseAlerts != 0 {
				t.Errorf("%s (freeze=%v): %d alerts named an honest principal", s.name, freeze, res.falseAlerts)
			}
		}
		rows = append(rows, r)
	}
	var honest [2]simResult
	for i, freeze := range []bool{false, true} {
		if freeze && raceEnabled {
			break // the honest team raises no alert either way
		}
		w := newSimWorld(t, base, kek, freeze, 1, false, true)
		start := time.Now()
		honest[i] = w.runHonest(t, cfg.span)
		t.Logf("honest freeze=%v: %v wall, %d views, alerts %v", freeze, time.Since(start).Round(time.Millisecond), honest[i].views, honest[i].alertKinds)
		if honest[i].falseAlerts != 0 {
			t.Errorf("honest team (freeze=%v): %d alerts: %v", freeze, honest[i].falseAlerts, honest[i].alertKinds)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nReplay: %d documents, %s simulated, default configuration (FreezeOnAlert in the last columns).\n\n", cfg.docs, cfg.span)
	fmt.Fprintf(&b, "| strategy | defaults: exposed 1 h / 24 h / %s | defaults: first alert (kind, when, most seen by one identity then) | FreezeOnAlert: exposed (most by one identity) | FreezeOnAlert, no canaries: exposed (most by one identity), first alert | false alerts |\n| --- | --- | --- | --- | --- | --- |\n", short(cfg.span))
	for _, r := range rows {
		d, f, n := r.res[0], r.res[1], r.res[2]
		fmt.Fprintf(&b, "| %s | %d / %d / %d | %s | %d (%d) | %d (%d), %s | %d |\n", r.name, d.at1h, d.at24h, d.atEnd, d.alertCell(), f.atEnd, f.maxPerID, n.atEnd, n.maxPerID, n.alertCell(), d.falseAlerts+f.falseAlerts+n.falseAlerts)
	}
	h := honest[0]
	fmt.Fprintf(&b, "| honest team: 5 reviewers, 8-h shifts, 40–120/h, decisions within minutes; auditor 20 at once daily | %d views, %d decisions | %s | — | — | %d |\n",
		h.views, h.decisions, h.alertCell(), honest[0].falseAlerts+honest[1].falseAlerts)
	t.Log(b.String())
	if p := os.Getenv("REPLAY_TABLE"); p != "" {
		os.WriteFile(p, []byte(b.String()), 0o644)
	}
}

func short(d time.Duration) string { return fmt.Sprintf("%d days", int(d.Hours()/24)) }

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
}

type simResult struct {
	at1h, at24h, atEnd int
	perID              map[string]int
	maxPerID           int
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

// buildCorpus puts n documents once; every world starts from a copy.
func buildCorpus(t *testing.T, kek kms.KEK, n int) *memstore.Store {
	st := memstore.New()
	clock := &replayClock{t: time.Date(2021, 4, 20, 0, 0, 0, 0, time.UTC)}
	st.Now = clock.Now // the store's clock (store.Clock) is the simulation's
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek, Now: clock.Now, Retention: 8 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 1024+i%512)...)
				if _, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprintf("member-%d", i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
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

func newSimWorld(t *testing.T, base *memstore.Store, kek kms.KEK, freeze bool, instances int, local bool, canaries bool) *simWorld {
	st := memstore.New()
	for _, k := range base.Keys() {
		b, _ := base.Bytes(k)
		st.SetBytes(k, b)
	}
	w := &simWorld{st: st, clock: &replayClock{t: time.Date(2021, 4, 20, 9, 0, 0, 0, time.UTC)}, attacker: map[string]bool{}, seen: map[string]int{}, real: map[string]bool{}}
	w.t0 = w.clock.Now()
	st.Now = w.clock.Now
	for _, k := range st.Keys() {
		if id, ok := strings.CutPrefix(k, "keys/"); ok {
			w.docs = append(w.docs, id)
			w.real[id] = true
		}
	}
	rand.Shuffle(len(w.docs), func(i, j int) { w.docs[i], w.docs[j] = w.docs[j], w.docs[i] })
	// The instances share one Counter, as they share the store limiter by
	// default: the same contract (vault/detect/countertest), kept in
	// memory so six simulated days run in seconds. The store limiter
	// itself is tested on MinIO (TestBurstFreezeExact, the conformance
	// suite). The opt-out row gives each instance its own.
	shared := vault.NewMemoryLimiter()
	for range max(instances, 1) {
		cfg := vault.Config{Store: st, KEK: kek, Now: w.clock.Now, FreezeOnAlert: freeze, Retention: 8 * 24 * time.Hour,
			OnAlert: func(a vault.Alert) {
				w.mu.Lock()
				w.alerts = append(w.alerts, a)
				most := 0
				for _, n := range w.seen {
					most = max(most, n)
				}
				w.seenAtAlert = append(w.seenAtAlert, most)
				w.mu.Unlock()
			}}
		cfg.Limiter, cfg.AllowLocalLimiter = shared, true
		if !canaries {
			cfg.CanaryRate = -1
		}
		if local {
			cfg.Limiter = vault.NewMemoryLimiter()
		}
		v, err := vault.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close(context.Background()) })
		w.vs = append(w.vs, v)
	}
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

// run is a discrete-event loop over the actors until end.
func (w *simWorld) run(actors []*actor, end time.Time, each func(now time.Time)) {
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
		w.clock.mu.Lock()
		w.clock.t = a.next
		w.clock.mu.Unlock()
		a.next = a.act(a.next)
		each(a.next)
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
func (w *simWorld) firstAlertSeen(res *simResult, exposed map[string]map[string]bool) {
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
		w.firstAlertSeen(&res, exposed)
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
			if garbageLeft > 0 {
				garbageLeft--
				v.Redeem(context.Background(), fmt.Sprintf("idv1_garbage%d", garbageLeft), vault.Requester{Principal: p, RemoteAddr: "198.51.100.7:4000"})
				return now.Add(5 * time.Minute / 9)
			}
			if next >= len(queue) {
				return time.Time{}
			}
			id := queue[next]
			next++
			err := w.fetch(v, p, id)
			switch {
			case err == nil:
				if !w.real[id] {
					return now.Add(s.every) // a canary: served, but not an identity exposed
				}
				w.served(p)
				exposed[p][id] = true
				all[id] = true
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
	w.run(actors, w.t0.Add(span), func(now time.Time) {
		w.firstAlertSeen(&res, exposed)
		for _, m := range marks {
			if *m.dst == 0 && (now.IsZero() || !now.Before(w.t0.Add(m.at))) {
				*m.dst = len(all)
			}
		}
	})
	for _, m := range marks {
		if *m.dst == 0 {
			*m.dst = len(all)
		}
	}
	res.atEnd = len(all)
	for p, m := range exposed {
		res.perID[p] = len(m)
		res.maxPerID = max(res.maxPerID, len(m))
	}
	w.firstAlertSeen(&res, exposed)
	w.result(&res)
	return res
}

// runHonest: 5 reviewers on 8-hour shifts (two early, two late, one
// night), each 40–120 documents an hour, each decided 1–3 minutes after it
// was opened; uploads at the rate of decisions; an auditor opening 20
// documents at once once a day. No alert may fire.
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
	actors = append(actors, &actor{next: w.t0, act: func(now time.Time) time.Time {
		rest := decisions[:0]
		for _, d := range decisions {
			if d.at.After(now) {
				rest = append(rest, d)
				continue
			}
			if err := v.Decide(ctx, d.id, vault.Decision{Verdict: vault.Approved}, vault.Actor{Principal: d.by, Reason: "age checked"}); err != nil && !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("decide: %v", err)
			}
			res.decisions++
			info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-new"})
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
	w.run(actors, w.t0.Add(span), func(time.Time) {})
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
