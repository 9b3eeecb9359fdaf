package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
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
		canary := w.canaries[mrand.IntN(len(w.canaries))]
		// The attacker's third request happens to be a canary.
		order := []string{w.docs[10], w.docs[11], canary, w.docs[12]}
		for range 3 {
			order = append(order, w.docs[mrand.IntN(len(w.docs))])
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
