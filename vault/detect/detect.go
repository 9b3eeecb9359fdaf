// Package detect decides, from a stream of access events, when a principal
// (or the whole vault) behaves like someone taking documents in bulk.
//
// Its contract is narrow: events in (Observe), an Outcome out (refuse or
// not, and the alerts this event raised). It knows nothing of documents,
// tokens or storage; counts live in a Counter, which is in-process
// (NewMemoryCounter), in a shared store (NewStoreCounter) or in Redis
// (module vault/redislimiter), so every instance sharing a Counter sees
// the same counts. Principals and addresses arrive as opaque keys (the
// vault passes keyed hashes), and no key names a person.
//
// What it looks at, with the default Rules:
//
//   - short and long windows of documents viewed per principal: 25 in
//     5 minutes raises an alert; 200 an hour, 1,200 a day and 6,000 a week
//     are quotas (refused beyond, with an alert);
//   - views without decisions: documents a principal opened more than
//     4 minutes ago (and within the hour) that it has not decided or
//     handed on; more than 20 raises an alert. An honest reviewer decides
//     within minutes; a thief piles views up, however slowly it goes;
//   - decisions per principal: more than 25 deleting decisions in 5
//     minutes raises an alert, 200 an hour is a quota; more than 10
//     decisions beyond the documents viewed in the hour (a principal
//     deciding what it never opened) raises an alert;
//   - hand-ons: more than 20 documents handed on in the hour, when they
//     are also more than half of what the principal viewed in it (a
//     thief passing on everything it takes, so that no view stays
//     undecided), raises an alert;
//   - the same, vault-wide (more than 60), and vault-wide volume;
//   - refused tokens per principal and per address, over 5 minutes and a
//     day.
//
// Each count is exact under concurrency: the Counter hands out tickets, so
// of 100 parallel requests over a threshold exactly the ones past it see
// themselves past it, and each alert is raised once per window, guarded by
// a create-only marker in the Counter.
package detect

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// Kind is what happened.
type Kind int

// Event kinds.
const (
	// View: a principal was granted a document (it can now see it).
	View Kind = iota + 1
	// Redeem: a principal redeemed a token.
	Redeem
	// Decision: a principal decided a document (Event.HandedOn: it handed
	// it on, keeping it; otherwise the decision deleted it).
	Decision
	// Refusal: a token was refused as forged, expired, replayed or someone
	// else's (probing).
	Refusal
)

// Event is one observation. Principal and Addr are opaque keys in the
// store key alphabet ([A-Za-z0-9._-], e.g. hex keyed hashes); either may
// be empty.
type Event struct {
	Kind      Kind
	Time      time.Time
	Principal string
	Addr      string
	// Rules, if set, are the principal's own (e.g. by role); nil: the
	// Detector's. Vault-wide rules are always the Detector's.
	Rules *Rules
	// HandedOn marks a Decision that passed the document on instead of
	// deciding it (it stays).
	HandedOn bool
}

// Rule names.
const (
	RuleBurst          = "bulk-access"        // views in a short window
	RuleHour           = "quota-hour"         // views an hour (quota)
	RuleDay            = "quota-day"          // views a day (quota)
	RuleWeek           = "quota-week"         // views a week (quota)
	RuleRedemptions    = "quota-redemptions"  // redemptions an hour (quota)
	RuleUndecided      = "views-undecided"    // views without decisions, per principal
	RuleVaultUndecided = "vault-undecided"    // views without decisions, vault-wide
	RuleVaultVolume    = "vault-volume"       // views an hour, vault-wide
	RuleProbe          = "refusal-burst"      // refused tokens in a short window
	RuleProbeDay       = "refusal-day"        // refused tokens a day
	RuleDecideBurst    = "decision-burst"     // deleting decisions in a short window
	RuleDecideHour     = "quota-decisions"    // deleting decisions an hour (quota)
	RuleUnviewed       = "decisions-unviewed" // decisions beyond views, per principal
	RuleHandedOn       = "views-handed-on"    // most views handed on, per principal
)

// Limit is a threshold over a window: an alert fires when a count goes
// above Max (is crossed, not merely reached).
type Limit struct {
	Max    int64
	Window time.Duration
}

// Rules are the thresholds. Zero fields take the defaults (DefaultRules).
// Windows of Redemptions, Undecided, VaultUndecided, VaultVolume, Probe and
// of the decision rules are at most 2 h, of ProbeDay 2 days, of the view
// windows 8 days.
type Rules struct {
	Burst Limit // alert (default 25 in 5 min)
	Hour  Limit // quota (default 200 in 1 h)
	Day   Limit // quota (default 1,200 in 24 h)
	Week  Limit // quota (default 6,000 in 7 days)
	// Redemptions: a quota on the tokens a principal may be granted
	// (default 400 in 1 h), checked on View events. Each token redeems
	// at most once, within its TTL, so redemptions in any window are at
	// most Max plus the tokens granted within one TTL before it; the
	// vault sends no Redeem events (a Redeem event is still counted and
	// checked against it, for callers that send them).
	Redemptions Limit
	// Undecided: more than Max views older than Grace and inside Window
	// that their principal has not decided (default 20, 1 h).
	Undecided Limit
	// Grace is how long a view may stay undecided (default 4 min).
	Grace time.Duration
	// VaultUndecided: the same, vault-wide (default 60, 1 h).
	VaultUndecided Limit
	// VaultVolume: views vault-wide (default 3,000 in 1 h).
	VaultVolume Limit
	Probe       Limit // refused tokens (default 10 in 5 min)
	ProbeDay    Limit // refused tokens (default 40 in 24 h)
	// DecideBurst: more than Max deleting decisions (not hand-ons) within
	// Window raise an alert (default 25 in 5 min, like views: an honest
	// reviewer decides what it opens, one in tens of seconds).
	DecideBurst Limit
	// DecideHour: the same as a quota (default 200 in 1 h): the decision
	// past it is refused.
	DecideHour Limit
	// Unviewed: more than Max decisions (hand-ons included) within Window
	// beyond the documents the principal viewed in it raise an alert
	// (default 10 in 1 h; the slack covers a view just outside the window).
	Unviewed Limit
	// HandedOn: more than Max documents handed on within Window, when they
	// are also more than half of the documents viewed in it, raise an
	// alert (default 20 in 1 h).
	HandedOn Limit
}

// DefaultRules returns the defaults. They are set for human reviewers:
// 40–120 documents an hour, each decided within minutes, and an auditor
// opening 20 documents at once.
func DefaultRules() Rules {
	return Rules{
		Burst:          Limit{25, 5 * time.Minute},
		Hour:           Limit{200, time.Hour},
		Day:            Limit{1200, 24 * time.Hour},
		Week:           Limit{6000, 7 * 24 * time.Hour},
		Redemptions:    Limit{400, time.Hour},
		Undecided:      Limit{20, time.Hour},
		Grace:          4 * time.Minute,
		VaultUndecided: Limit{60, time.Hour},
		VaultVolume:    Limit{3000, time.Hour},
		Probe:          Limit{10, 5 * time.Minute},
		ProbeDay:       Limit{40, 24 * time.Hour},
		DecideBurst:    Limit{25, 5 * time.Minute},
		DecideHour:     Limit{200, time.Hour},
		Unviewed:       Limit{10, time.Hour},
		HandedOn:       Limit{20, time.Hour},
	}
}

func (r Rules) withDefaults() Rules {
	d := DefaultRules()
	fill := func(l *Limit, def Limit) {
		if l.Max <= 0 {
			l.Max = def.Max
		}
		if l.Window <= 0 {
			l.Window = def.Window
		}
	}
	fill(&r.Burst, d.Burst)
	fill(&r.Hour, d.Hour)
	fill(&r.Day, d.Day)
	fill(&r.Week, d.Week)
	fill(&r.Redemptions, d.Redemptions)
	fill(&r.Undecided, d.Undecided)
	fill(&r.VaultUndecided, d.VaultUndecided)
	fill(&r.VaultVolume, d.VaultVolume)
	fill(&r.Probe, d.Probe)
	fill(&r.ProbeDay, d.ProbeDay)
	fill(&r.DecideBurst, d.DecideBurst)
	fill(&r.DecideHour, d.DecideHour)
	fill(&r.Unviewed, d.Unviewed)
	fill(&r.HandedOn, d.HandedOn)
	if r.Grace <= 0 {
		r.Grace = d.Grace
	}
	// Windows counted in minute slots are at most 2 h, in hour slots 2
	// days (what the Counter keeps; see keepOf).
	for _, l := range []*Limit{&r.Redemptions, &r.Undecided, &r.VaultUndecided, &r.VaultVolume, &r.Probe,
		&r.DecideBurst, &r.DecideHour, &r.Unviewed, &r.HandedOn} {
		l.Window = min(l.Window, 2*hour)
	}
	r.ProbeDay.Window = min(r.ProbeDay.Window, 2*day)
	r.Grace = min(r.Grace, r.Undecided.Window/2)
	return r
}

// Alert is a threshold crossed. Principal and Addr are the event's keys
// (empty for a vault-wide rule).
type Alert struct {
	Rule      string
	Principal string
	Addr      string
	Count     int64
	Limit     Limit
}

func (a Alert) String() string {
	return fmt.Sprintf("%s: %d in %s, limit %d", a.Rule, a.Count, a.Limit.Window, a.Limit.Max)
}

// Outcome is what Observe decided.
type Outcome struct {
	// Refuse: a quota is exhausted; the request must be refused.
	Refuse bool
	// Over: some rule's count is above its threshold for this event (a
	// quota or an alert rule). A vault that freezes on alerts refuses
	// these too: the count, not a marker written later, decides, so a
	// parallel burst cannot slip past.
	Over bool
	// Alerts raised by this event; each is raised once per rule, key and
	// window across every instance sharing the Counter.
	Alerts []Alert
}

// Options configure a Detector.
type Options struct {
	Rules Rules
	// Shards spreads vault-wide counts over that many counter keys, so
	// instances do not contend on one (default 8).
	Shards int
	// VaultEvery is how often one instance re-reads the vault-wide counts
	// (default 10 s): their alerts fire within that of a crossing.
	VaultEvery time.Duration
	// CacheSize bounds the cache of closed slots (default 1<<16).
	CacheSize int
}

// Detector applies Rules to events. It is safe for concurrent use.
type Detector struct {
	c      Counter
	opts   Options
	rules  Rules
	closed *slotCache
	sat    *slotCache // keys whose count in a slot is known past every threshold

	mu        sync.Mutex
	vaultNext time.Time
}

// New returns a Detector keeping its counts in c.
func New(c Counter, opts Options) *Detector {
	opts.Rules = opts.Rules.withDefaults()
	if opts.Shards <= 0 {
		opts.Shards = 8
	}
	if opts.VaultEvery <= 0 {
		opts.VaultEvery = 10 * time.Second
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1 << 16
	}
	return &Detector{c: c, opts: opts, rules: opts.Rules, closed: newSlotCache(opts.CacheSize), sat: newSlotCache(opts.CacheSize)}
}

func (d *Detector) rulesFor(e Event) Rules {
	if e.Rules != nil {
		return e.Rules.withDefaults()
	}
	return d.rules
}

// Slot widths: a window is read as the sum of the slots that overlap it,
// so it can reach one slot further back than its length.
const (
	minute = time.Minute
	hour   = time.Hour
	day    = 24 * time.Hour
	// settle is how long after its end a slot is taken as closed (no
	// instance within the allowed clock skew still adds to it).
	settle = 10 * time.Second
)

func slotOf(t time.Time, width time.Duration) time.Time { return t.Truncate(width) }

// horizonOf returns, for slots of a width, how far back windows read them
// (span) and how long they are kept (keep): past the longest window read
// in them (minutes: 1 h + grace, hours: a day, days: a week).
func horizonOf(width time.Duration) (span, keep time.Duration) {
	switch {
	case width <= minute:
		return 2 * hour, 3 * hour
	case width <= hour:
		return 2 * day, 2 * day
	default:
		return 8 * day, 9 * day
	}
}

// spanOf is how far back windows read slots of a width.
func spanOf(width time.Duration) time.Duration {
	span, _ := horizonOf(width)
	return span
}

// keepOf is how long slots of a width are kept.
func keepOf(width time.Duration) time.Duration {
	_, keep := horizonOf(width)
	return keep
}

// add counts one event at t in its slot of width w under key.
func (d *Detector) add(ctx context.Context, key string, t time.Time, w time.Duration) (int64, error) {
	return d.c.Add(ctx, key, slotOf(t, w), keepOf(w))
}

// Observe applies one event and returns what to do. A Counter error is
// returned as is: the caller fails closed.
func (d *Detector) Observe(ctx context.Context, e Event) (Outcome, error) {
	var out Outcome
	var err error
	switch e.Kind {
	case View:
		err = d.view(ctx, e, &out)
	case Redeem:
		err = d.redeem(ctx, e, &out)
	case Decision:
		err = d.decision(ctx, e, &out)
	case Refusal:
		err = d.refusal(ctx, e, &out)
	default:
		err = fmt.Errorf("detect: unknown event kind %d", e.Kind)
	}
	return out, err
}

func (d *Detector) view(ctx context.Context, e Event, out *Outcome) error {
	r := d.rulesFor(e)
	p := "p/" + e.Principal
	// Per-minute, per-hour and per-day view counts: short windows sum
	// minutes, long ones hours and days, so no read grows with the window.
	// The four counts are independent: add them at once, so a shared
	// Counter costs one round trip of latency, not four.
	var nMin, nHour, nDay int64
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Go(func() { nMin, errs[0] = d.add(ctx, p+"/v1m", e.Time, minute) })
	wg.Go(func() { nHour, errs[1] = d.add(ctx, p+"/v1h", e.Time, hour) })
	wg.Go(func() { nDay, errs[2] = d.add(ctx, p+"/v1d", e.Time, day) })
	sh := rand.IntN(d.opts.Shards)
	wg.Go(func() {
		_, errs[3] = d.add(ctx, "vault/v1m/"+strconv.Itoa(sh), e.Time, minute)
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	// Each window is read from the coarsest slots that still resolve it.
	views := func(win time.Duration) (int64, error) {
		switch {
		case win <= 2*hour:
			return d.window(ctx, p+"/v1m", e.Time, minute, win, nMin)
		case win <= 2*day:
			return d.window(ctx, p+"/v1h", e.Time, hour, win, nHour)
		default:
			return d.window(ctx, p+"/v1d", e.Time, day, min(win, 8*day), nDay)
		}
	}
	var n [4]int64
	var err error
	for i, win := range []time.Duration{r.Burst.Window, r.Hour.Window, r.Day.Window, r.Week.Window} {
		if n[i], err = views(win); err != nil {
			return err
		}
	}
	burst, hourN, dayN, weekN := n[0], n[1], n[2], n[3]
	// Every grant is a token that redeems at most once: Redemptions is
	// checked here, on the views, so a redemption needs no count of its
	// own (see Rules.Redemptions).
	redeemN := hourN
	if r.Redemptions.Window != r.Hour.Window {
		if redeemN, err = views(r.Redemptions.Window); err != nil {
			return err
		}
	}
	und, err := d.undecided(ctx, []string{p}, e.Time, r)
	if err != nil {
		return err
	}
	checks := []struct {
		rule  string
		n     int64
		l     Limit
		quota bool
	}{
		{RuleBurst, burst, r.Burst, false},
		{RuleHour, hourN, r.Hour, true},
		{RuleRedemptions, redeemN, r.Redemptions, true},
		{RuleDay, dayN, r.Day, true},
		{RuleWeek, weekN, r.Week, true},
		{RuleUndecided, und, r.Undecided, false},
	}
	for _, c := range checks {
		if c.n <= c.l.Max {
			continue
		}
		out.Over = true
		out.Refuse = out.Refuse || c.quota
		if err := d.raise(ctx, out, Alert{Rule: c.rule, Principal: e.Principal, Count: c.n, Limit: c.l}, e.Time); err != nil {
			return err
		}
	}
	return d.vaultWide(ctx, e.Time, out)
}

// vaultWide reads the vault-wide counts at most every VaultEvery per
// Detector: reading them costs Shards reads per slot.
func (d *Detector) vaultWide(ctx context.Context, now time.Time, out *Outcome) error {
	d.mu.Lock()
	if now.Before(d.vaultNext) {
		d.mu.Unlock()
		return nil
	}
	d.vaultNext = now.Add(d.opts.VaultEvery)
	d.mu.Unlock()
	r := d.rules
	keys := make([]string, d.opts.Shards)
	for i := range keys {
		keys[i] = "vault/" + strconv.Itoa(i)
	}
	und, err := d.undecided(ctx, keys, now, r)
	if err != nil {
		return err
	}
	if und > r.VaultUndecided.Max {
		if err := d.raise(ctx, out, Alert{Rule: RuleVaultUndecided, Count: und, Limit: r.VaultUndecided}, now); err != nil {
			return err
		}
	}
	var vol int64
	for _, k := range keys {
		n, err := d.window(ctx, k[:len("vault/")]+"v1m/"+k[len("vault/"):], now, minute, r.VaultVolume.Window, -1)
		if err != nil {
			return err
		}
		vol += n
	}
	if vol > r.VaultVolume.Max {
		return d.raise(ctx, out, Alert{Rule: RuleVaultVolume, Count: vol, Limit: r.VaultVolume}, now)
	}
	return nil
}

// undecided counts, over the given keys, views older than Grace inside the
// window, minus decisions inside the window.
func (d *Detector) undecided(ctx context.Context, keys []string, now time.Time, r Rules) (int64, error) {
	w := r.Undecided
	if len(keys) > 1 {
		w = r.VaultUndecided
	}
	var views, decided int64
	for _, k := range keys {
		vk, dk := k+"/v1m", k+"/d1m"
		if len(keys) > 1 { // vault-wide shards: vault/<i> → vault/v1m/<i>
			vk, dk = "vault/v1m/"+k[len("vault/"):], "vault/d1m/"+k[len("vault/"):]
		}
		// Views in slots that ended at least Grace ago.
		end := slotOf(now.Add(-r.Grace), minute) // exclusive
		for s := slotOf(now.Add(-w.Window), minute); s.Before(end); s = s.Add(minute) {
			n, err := d.get(ctx, vk, s, minute, now)
			if err != nil {
				return 0, err
			}
			views += n
		}
		n, err := d.window(ctx, dk, now, minute, w.Window+r.Grace, -1)
		if err != nil {
			return 0, err
		}
		decided += n
	}
	return max(views-decided, 0), nil
}

func (d *Detector) redeem(ctx context.Context, e Event, out *Outcome) error {
	r := d.rulesFor(e)
	p := "p/" + e.Principal
	n, err := d.add(ctx, p+"/r1m", e.Time, minute)
	if err != nil {
		return err
	}
	total, err := d.window(ctx, p+"/r1m", e.Time, minute, r.Redemptions.Window, n)
	if err != nil {
		return err
	}
	if total > r.Redemptions.Max {
		out.Over, out.Refuse = true, true
		return d.raise(ctx, out, Alert{Rule: RuleRedemptions, Principal: e.Principal, Count: total, Limit: r.Redemptions}, e.Time)
	}
	return nil
}

// decision counts a decision: for the undecided views it offsets (d1m,
// per principal and vault-wide), and per principal as a deletion (x1m) or
// a hand-on (h1m), each checked against its rules. The counts are added at
// once, like a view's; each ticket decides, so of parallel decisions
// exactly those past a threshold are over it.
func (d *Detector) decision(ctx context.Context, e Event, out *Outcome) error {
	sh := strconv.Itoa(rand.IntN(d.opts.Shards))
	if e.Principal == "" {
		_, err := d.add(ctx, "vault/d1m/"+sh, e.Time, minute)
		return err
	}
	r := d.rulesFor(e)
	p := "p/" + e.Principal
	kind := p + "/x1m" // deletions
	if e.HandedOn {
		kind = p + "/h1m"
	}
	var nDec, nKind int64
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() { nDec, errs[0] = d.add(ctx, p+"/d1m", e.Time, minute) })
	wg.Go(func() { nKind, errs[1] = d.add(ctx, kind, e.Time, minute) })
	wg.Go(func() {
		_, errs[2] = d.add(ctx, "vault/d1m/"+sh, e.Time, minute)
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	decided, err := d.window(ctx, p+"/d1m", e.Time, minute, r.Unviewed.Window, nDec)
	if err != nil {
		return err
	}
	viewed, err := d.window(ctx, p+"/v1m", e.Time, minute, r.Unviewed.Window, -1)
	if err != nil {
		return err
	}
	type check struct {
		rule  string
		n     int64
		l     Limit
		over  bool
		quota bool
	}
	checks := []check{{RuleUnviewed, decided - viewed, r.Unviewed, decided-viewed > r.Unviewed.Max, false}}
	if e.HandedOn {
		handed, err := d.window(ctx, kind, e.Time, minute, r.HandedOn.Window, nKind)
		if err != nil {
			return err
		}
		if r.HandedOn.Window != r.Unviewed.Window {
			if viewed, err = d.window(ctx, p+"/v1m", e.Time, minute, r.HandedOn.Window, -1); err != nil {
				return err
			}
		}
		checks = append(checks, check{RuleHandedOn, handed, r.HandedOn, handed > r.HandedOn.Max && 2*handed > viewed, false})
	} else {
		burst, err := d.window(ctx, kind, e.Time, minute, r.DecideBurst.Window, nKind)
		if err != nil {
			return err
		}
		hourN, err := d.window(ctx, kind, e.Time, minute, r.DecideHour.Window, nKind)
		if err != nil {
			return err
		}
		checks = append(checks,
			check{RuleDecideBurst, burst, r.DecideBurst, burst > r.DecideBurst.Max, false},
			check{RuleDecideHour, hourN, r.DecideHour, hourN > r.DecideHour.Max, true})
	}
	for _, c := range checks {
		if !c.over {
			continue
		}
		out.Over = true
		out.Refuse = out.Refuse || c.quota
		if err := d.raise(ctx, out, Alert{Rule: c.rule, Principal: e.Principal, Count: c.n, Limit: c.l}, e.Time); err != nil {
			return err
		}
	}
	return nil
}

// refusal counts a refused token against its principal and its address.
// Once a key is past both probe thresholds in the current slots it is
// not counted again there: a flood costs one cache lookup per request, not
// a Counter write.
func (d *Detector) refusal(ctx context.Context, e Event, out *Outcome) error {
	r := d.rules
	for _, who := range []struct{ key, principal, addr string }{
		{"p/" + e.Principal, e.Principal, ""},
		{"a/" + e.Addr, "", e.Addr},
	} {
		if (who.principal == "" && who.addr == "") || d.sat.has(who.key+"/f1h", slotOf(e.Time, hour)) {
			continue
		}
		n1, err := d.add(ctx, who.key+"/f1m", e.Time, minute)
		if err != nil {
			return err
		}
		nh, err := d.add(ctx, who.key+"/f1h", e.Time, hour)
		if err != nil {
			return err
		}
		short, err := d.window(ctx, who.key+"/f1m", e.Time, minute, r.Probe.Window, n1)
		if err != nil {
			return err
		}
		long, err := d.window(ctx, who.key+"/f1h", e.Time, hour, r.ProbeDay.Window, nh)
		if err != nil {
			return err
		}
		if short > r.Probe.Max {
			out.Over = true
			if err := d.raise(ctx, out, Alert{Rule: RuleProbe, Principal: who.principal, Addr: who.addr, Count: short, Limit: r.Probe}, e.Time); err != nil {
				return err
			}
		}
		if long > r.ProbeDay.Max {
			out.Over = true
			if err := d.raise(ctx, out, Alert{Rule: RuleProbeDay, Principal: who.principal, Addr: who.addr, Count: long, Limit: r.ProbeDay}, e.Time); err != nil {
				return err
			}
			// Past the daily threshold this hour: alerted already; stop
			// writing for this key until the hour turns.
			d.sat.put(who.key+"/f1h", slotOf(e.Time, hour), long)
		}
	}
	return nil
}

// raise records a once-per-window marker (ticket 1 of the marker key) and
// adds the alert only for the caller that created it.
func (d *Detector) raise(ctx context.Context, out *Outcome, a Alert, now time.Time) error {
	who := a.Principal
	if who == "" {
		who = "a/" + a.Addr
	} else {
		who = "p/" + who
	}
	if a.Principal == "" && a.Addr == "" {
		who = "vault"
	}
	win := slotOf(now, a.Limit.Window)
	if d.sat.has("alert/"+a.Rule+"/"+who, win) {
		return nil
	}
	n, err := d.c.Add(ctx, "alert/"+a.Rule+"/"+who, win, a.Limit.Window+hour)
	if err != nil {
		return err
	}
	d.sat.put("alert/"+a.Rule+"/"+who, win, n)
	if n == 1 {
		out.Alerts = append(out.Alerts, a)
	}
	return nil
}

// window sums the slots of width w that overlap (now-win, now]. cur, if
// not negative, is the current slot's count (just returned by Add).
func (d *Detector) window(ctx context.Context, key string, now time.Time, w, win time.Duration, cur int64) (int64, error) {
	curSlot := slotOf(now, w)
	var sum int64
	if cur >= 0 {
		sum = cur
	} else {
		n, err := d.get(ctx, key, curSlot, w, now)
		if err != nil {
			return 0, err
		}
		sum = n
	}
	for s := curSlot.Add(-w); s.After(now.Add(-win - w)); s = s.Add(-w) {
		if !s.Add(w).After(now.Add(-win)) {
			break
		}
		n, err := d.get(ctx, key, s, w, now)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// get reads a slot, from the cache once the slot is closed. A miss on a
// closed slot fills the cache for the whole window behind it in one call
// when the Counter is a Ranger.
func (d *Detector) get(ctx context.Context, key string, slot time.Time, w time.Duration, now time.Time) (int64, error) {
	closed := !now.Before(slot.Add(w + settle))
	if closed {
		if n, ok := d.closed.get(key, slot); ok {
			return n, nil
		}
		last := slotOf(now.Add(-settle), w).Add(-w) // the newest closed slot
		// An isolated miss (a slot that closed since the last read) is one
		// Get; a cold window (its neighbours missing too) is one Range.
		cold := false
		for i := 1; i <= 3 && !cold; i++ {
			_, ok := d.closed.get(key, slot.Add(time.Duration(-i)*w))
			cold = !ok
		}
		if r, ok := d.c.(Ranger); ok && slot.Before(last) && cold {
			first := slotOf(now.Add(-spanOf(w)), w)
			if slot.Before(first) {
				first = slot
			}
			ns, err := r.Range(ctx, key, first, last, w, keepOf(w))
			if err != nil {
				return 0, err
			}
			for i, n := range ns {
				d.closed.put(key, first.Add(time.Duration(i)*w), n)
			}
			if n, ok := d.closed.get(key, slot); ok {
				return n, nil
			}
		}
	}
	n, err := d.c.Get(ctx, key, slot, keepOf(w))
	if err != nil {
		return 0, err
	}
	if closed {
		d.closed.put(key, slot, n)
	}
	return n, nil
}
