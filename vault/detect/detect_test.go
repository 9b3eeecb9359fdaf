package detect_test

import (
	"context"
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
