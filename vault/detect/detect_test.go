package detect_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/detect"
)

// simClock is the detector's simulated time: events carry it.
type simClock struct{ t time.Time }

func (c *simClock) step(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

func observe(t *testing.T, d *detect.Detector, e detect.Event) detect.Outcome {
	t.Helper()
	out, err := d.Observe(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An alert fires when the count goes past the threshold, not on reaching
// it, and once per window, also when a parallel burst crosses it.
func TestAlertOnCrossingOnce(t *testing.T) {
	d := detect.New(detect.NewMemoryCounter(0), detect.Options{})
	clk := &simClock{time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	var alerts []detect.Alert
	over := 0
	for i := 1; i <= 40; i++ {
		out := observe(t, d, detect.Event{Kind: detect.View, Time: clk.step(time.Second), Principal: "p1"})
		alerts = append(alerts, out.Alerts...)
		if out.Over {
			over++
		}
		if i == 25 && len(alerts) != 0 {
			t.Fatalf("alert on reaching the threshold: %v", alerts)
		}
	}
	if len(alerts) != 1 || alerts[0].Rule != detect.RuleBurst || alerts[0].Count != 26 {
		t.Fatalf("alerts %v, want one bulk-access at 26", alerts)
	}
	if over != 15 {
		t.Fatalf("%d events over the threshold, want 15", over)
	}
	// Parallel: exactly one alert, exactly the events past the threshold over.
	var mu sync.Mutex
	n, overP := 0, 0
	var wg sync.WaitGroup
	at := clk.step(time.Hour)
	for range 100 {
		wg.Go(func() {
			out := observe(t, d, detect.Event{Kind: detect.View, Time: at, Principal: "p2"})
			mu.Lock()
			n += len(out.Alerts)
			if out.Over {
				overP++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if n != 1 || overP != 75 {
		t.Fatalf("parallel burst: %d alerts, %d over; want 1 and 75", n, overP)
	}
}

// Each view quota counts views in its own window: six views spread so that
// only one quota's window holds them all refuse the sixth, by that rule.
func TestViewQuotaWindows(t *testing.T) {
	lots := detect.Limit{Max: 1000, Window: time.Hour}
	for _, tc := range []struct {
		rule string
		gap  time.Duration
		set  func(r *detect.Rules)
	}{
		{detect.RuleHour, 5 * time.Minute, func(r *detect.Rules) { r.Hour = detect.Limit{Max: 5, Window: time.Hour} }},
		{detect.RuleDay, 2 * time.Hour, func(r *detect.Rules) { r.Day = detect.Limit{Max: 5, Window: 24 * time.Hour} }},
		{detect.RuleWeek, 25 * time.Hour, func(r *detect.Rules) { r.Week = detect.Limit{Max: 5, Window: 7 * 24 * time.Hour} }},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			r := detect.Rules{Burst: detect.Limit{Max: 1000, Window: 5 * time.Minute}, Hour: lots, Redemptions: lots,
				Day: detect.Limit{Max: 1000, Window: 24 * time.Hour}, Week: detect.Limit{Max: 1000, Window: 7 * 24 * time.Hour}}
			tc.set(&r)
			d := detect.New(detect.NewMemoryCounter(0), detect.Options{Rules: r})
			clk := &simClock{time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
			for i := 1; i <= 6; i++ {
				out := observe(t, d, detect.Event{Kind: detect.View, Time: clk.step(tc.gap), Principal: "p1"})
				if out.Refuse != (i == 6) {
					t.Fatalf("view %d: refuse %v", i, out.Refuse)
				}
				if i == 6 && (len(out.Alerts) != 1 || out.Alerts[0].Rule != tc.rule || out.Alerts[0].Count != 6) {
					t.Fatalf("view 6: alerts %v, want one %s at 6", out.Alerts, tc.rule)
				}
			}
		})
	}
}

// Views without decisions: a slow thief is caught before 50, a reviewer
// deciding within minutes never is, and an auditor opening 20 at once
// stays under the threshold.
func TestUndecided(t *testing.T) {
	for _, c := range []struct {
		name    string
		every   time.Duration
		decide  bool
		views   int
		alertBy int // 0: no alert
	}{
		{"thief 199/h", time.Hour / 199, false, 200, 50},
		{"thief 24 per 5 min", 5 * time.Minute / 24, false, 200, 50},
		{"reviewer 120/h", 30 * time.Second, true, 600, 0},
		{"auditor 20 at once", 0, false, 20, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := detect.New(detect.NewMemoryCounter(0), detect.Options{Rules: detect.Rules{Burst: detect.Limit{Max: 1000}}})
			clk := &simClock{time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
			var due []time.Time
			for i := 1; i <= c.views; i++ {
				now := clk.step(c.every)
				for len(due) > 0 && !due[0].After(now) {
					observe(t, d, detect.Event{Kind: detect.Decision, Time: due[0], Principal: "p"})
					due = due[1:]
				}
				out := observe(t, d, detect.Event{Kind: detect.View, Time: now, Principal: "p"})
				if c.decide {
					due = append(due, now.Add(2*time.Minute))
				}
				for _, a := range out.Alerts {
					if a.Rule == detect.RuleUndecided {
						if c.alertBy == 0 || i >= c.alertBy {
							t.Fatalf("undecided alert at view %d (want by %d)", i, c.alertBy)
						}
						t.Logf("undecided alert at view %d", i)
						return
					}
				}
			}
			// The auditor: an hour later, still no alert.
			out := observe(t, d, detect.Event{Kind: detect.View, Time: clk.step(10 * time.Minute), Principal: "p"})
			for _, a := range out.Alerts {
				if a.Rule == detect.RuleUndecided && c.alertBy == 0 {
					t.Fatalf("false alert: %v", a)
				}
			}
			if c.alertBy != 0 {
				t.Fatal("no undecided alert")
			}
		})
	}
}

// Probing: refusals past the day's threshold stop costing Counter writes.
func TestProbeSaturates(t *testing.T) {
	c := detect.NewMemoryCounter(0)
	d := detect.New(c, detect.Options{})
	clk := &simClock{time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	var alerts []string
	for range 45 {
		out := observe(t, d, detect.Event{Kind: detect.Refusal, Time: clk.step(time.Millisecond), Addr: "a1"})
		for _, a := range out.Alerts {
			alerts = append(alerts, a.Rule)
		}
	}
	held := c.Len()
	for range 10_000 { // 5 minutes more: new minute slots, had it kept counting
		observe(t, d, detect.Event{Kind: detect.Refusal, Time: clk.step(30 * time.Millisecond), Addr: "a1"})
	}
	if c.Len() != held {
		t.Fatalf("a saturated key kept adding counts: %d -> %d", held, c.Len())
	}
	if len(alerts) != 2 {
		t.Fatalf("alerts %v, want refusal-burst and refusal-day once each", alerts)
	}
}

// TestTallyMatchesObserve: a Tally fed the events a Detector observed
// holds exactly the counts the Detector added (vault-wide counts summed
// over the shards), so a Counter that lost its counts is refilled with
// what it had.
func TestTallyMatchesObserve(t *testing.T) {
	c := &recordingCounter{Counter: detect.NewMemoryCounter(0), adds: map[string]int64{}}
	d := detect.New(c, detect.Options{Rules: detect.Rules{Burst: detect.Limit{Max: 1 << 20}, Hour: detect.Limit{Max: 1 << 20},
		Day: detect.Limit{Max: 1 << 20}, Week: detect.Limit{Max: 1 << 20}, Redemptions: detect.Limit{Max: 1 << 20}}})
	tally := detect.NewTally(0)
	clk := &simClock{time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		e := detect.Event{Time: clk.step(time.Duration(r.IntN(int(2 * time.Minute)))), Principal: fmt.Sprint("p", r.IntN(5))}
		switch r.IntN(10) {
		case 0:
			e.Kind = detect.Redeem
		case 1, 2:
			e.Kind, e.HandedOn = detect.Decision, r.IntN(3) == 0
		case 3:
			if r.IntN(8) == 0 { // few: past 40 a day the detector stops counting
				e.Kind, e.Addr = detect.Refusal, fmt.Sprint("a", r.IntN(3))
			} else {
				e.Kind = detect.View
			}
		default:
			e.Kind = detect.View
		}
		observe(t, d, e)
		tally.Add(e)
	}
	counts := tally.Counts(clk.t)
	if len(counts) < 100 {
		t.Fatalf("%d counts", len(counts))
	}
	for _, sc := range counts {
		if got := stored(c, sc); got != sc.N {
			t.Fatalf("%v: the detector counted %d", sc, got)
		}
		if !sc.Slot.Add(sc.Keep).After(clk.t) {
			t.Fatalf("%v: past its keep time", sc)
		}
	}
	// And the other way: every count the detector added (but its alert
	// markers) and still keeps is in the tally.
	inTally := map[string]bool{}
	for _, sc := range counts {
		inTally[fmt.Sprint(sc.Key, "@", sc.Slot.Unix())] = true
	}
	for k, keepUntil := range c.keeps() {
		if strings.HasPrefix(k, "alert/") || !keepUntil.After(clk.t) {
			continue
		}
		key, at, _ := strings.Cut(k, "@")
		if strings.HasPrefix(key, "vault/") {
			key = key[:strings.LastIndexByte(key, '/')] + "/0"
		}
		if !inTally[key+"@"+at] {
			t.Fatalf("the detector counted %s; the tally did not", k)
		}
	}
}

// recordingCounter notes every key and slot added, and until when kept.
type recordingCounter struct {
	detect.Counter
	mu   sync.Mutex
	adds map[string]int64 // key@slot → keep-until (Unix)
}

func (r *recordingCounter) Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	r.mu.Lock()
	r.adds[fmt.Sprint(key, "@", slot.Unix())] = slot.Add(keep).Unix()
	r.mu.Unlock()
	return r.Counter.Add(ctx, key, slot, keep)
}

func (r *recordingCounter) keeps() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Time{}
	for k, u := range r.adds {
		out[k] = time.Unix(u, 0)
	}
	return out
}

// stored returns what c holds for the count sc; a vault-wide count (one
// whose key ends in shard "/0") is the sum of its eight shards.
func stored(c detect.Counter, sc detect.SlotCount) int64 {
	shared, ok := strings.CutSuffix(sc.Key, "/0")
	if !ok || !strings.HasPrefix(sc.Key, "vault/") {
		n, _ := c.Get(context.Background(), sc.Key, sc.Slot, sc.Keep)
		return n
	}
	var sum int64
	for i := range 8 {
		n, _ := c.Get(context.Background(), fmt.Sprint(shared, "/", i), sc.Slot, sc.Keep)
		sum += n
	}
	return sum
}
