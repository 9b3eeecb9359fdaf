package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/detect"
)

// AlertKind names what raised an alert.
type AlertKind string

// Alert kinds.
const (
	// AlertQuota: a principal went over a quota (an hour, a day, a week,
	// redemptions) and was refused.
	AlertQuota AlertKind = "quota-exceeded"
	// AlertBulk: a principal's access rate jumped (a burst of distinct
	// documents), well before any quota is exhausted.
	AlertBulk AlertKind = "bulk-access"
	// AlertProbing: a burst of refused tokens (forged, expired, replayed,
	// someone else's) from one principal or one remote address.
	AlertProbing AlertKind = "refusal-burst"
	// AlertCanary: a canary document was granted, redeemed or decided.
	AlertCanary AlertKind = "canary-touched"
	// AlertFrozen: a principal was frozen after another alert (the
	// default; see Config.Detection.AlertOnly).
	AlertFrozen AlertKind = "principal-frozen"
	// AlertDecisions: a principal decided documents in bulk (a burst of
	// deleting decisions).
	AlertDecisions AlertKind = "bulk-decisions"
	// AlertUnviewed: a principal decided more documents than it was
	// granted (it decides what it never opened).
	AlertUnviewed AlertKind = "decisions-unviewed"
	// AlertHandedOn: a principal handed on most of what it viewed, many
	// times within the hour (views dealt with on paper, none decided).
	AlertHandedOn AlertKind = "views-handed-on"
)

// Alert is raised on suspected abuse. It is also written to the audit log
// (event "alert", reason = Kind). It carries no secret.
type Alert struct {
	Time       time.Time
	Kind       AlertKind
	Principal  string
	RemoteAddr string
	Object     string // document ID, where one is involved
	Detail     string
}

// AlertUndecided: a principal opened documents and neither decided
// them (Decide) nor handed them on within minutes; AlertVolume: views
// vault-wide are out of line (no principal named).
const (
	AlertUndecided AlertKind = "views-undecided"
	AlertVolume    AlertKind = "vault-volume"
)

// Quota bounds what one principal may do and when an alert fires. Zero
// fields take the defaults; counts are kept in the Limiter, shared by every
// instance on the store unless Config.Detection.Limiter says otherwise.
type Quota struct {
	// Documents is how many documents a principal may be granted per
	// Window (default 200: a busy human reviewer's hour). Every grant
	// counts, also a second grant of one document.
	Documents int
	// Redemptions is how many tokens a principal may be granted per
	// Window for redemption (default 400). It is counted when a token is
	// granted, not again when it is redeemed: a token redeems at most
	// once, within its TTL (at most Config.Access.MaxGrantTTL), so a principal's
	// redemptions in any Window are at most Redemptions plus the tokens
	// granted within MaxGrantTTL before it. A grant past it is refused
	// with ErrQuotaExceeded. Documents binds first unless Redemptions is
	// set below it.
	Redemptions int
	// Window is the quota window (default 1 h, at most 2 h).
	Window time.Duration
	// DocumentsPerDay and DocumentsPerWeek are the long-window quotas
	// (defaults 1,200 and 6,000: an 8-hour shift at 120 an hour, and five;
	// or 6 and 30 times Documents when that is higher).
	DocumentsPerDay, DocumentsPerWeek int
	// Burst: more than Burst grants within BurstWindow raise a bulk-access
	// alert (default 25 in 5 min: a reviewer reads one in tens of seconds,
	// an auditor opens 20 at once).
	Burst int
	// BurstWindow defaults to 5 min.
	BurstWindow time.Duration
	// Undecided: more than Undecided documents granted to a principal over
	// UndecidedGrace ago (and within the hour) that it has not decided or
	// handed on (Vault.Decide) raise AlertUndecided (default 20, 4 min).
	Undecided      int
	UndecidedGrace time.Duration
	// Decisions is how many documents a principal may decide with
	// Approved or Rejected (which delete them) per Window (default 200);
	// the decision past it is refused with ErrQuotaExceeded.
	Decisions int
	// DecisionBurst: more than DecisionBurst deleting decisions within
	// BurstWindow raise AlertDecisions (default 25).
	DecisionBurst int
	// Unviewed: more than Unviewed decisions within the hour beyond the
	// documents the principal was granted in it raise AlertUnviewed
	// (default 10). Raise it for a role that decides without viewing.
	Unviewed int
	// HandedOn: more than HandedOn documents handed on within Window, when
	// they are also more than half of the documents the principal was
	// granted in it, raise AlertHandedOn (default 20).
	HandedOn int
}

// Defaults of Quota and of the probing detector.
const (
	DefaultQuotaDocuments   = 200
	DefaultQuotaRedemptions = 400
	DefaultQuotaWindow      = time.Hour
	DefaultQuotaDay         = 1200
	DefaultQuotaWeek        = 6000
	DefaultBurst            = 25
	DefaultBurstWindow      = 5 * time.Minute
	DefaultUndecided        = 20
	DefaultUndecidedGrace   = 4 * time.Minute
	DefaultProbeThreshold   = 10 // refusals per principal or address in DefaultProbeWindow
	DefaultProbeWindow      = 5 * time.Minute
	DefaultProbeDay         = 40 // refusals per principal or address a day
	DefaultDecisions        = 200
	DefaultDecisionBurst    = 25
	DefaultUnviewed         = 10
	DefaultHandedOn         = 20
)

// rules maps a Quota onto the detector's rules (zero fields stay zero:
// the detector's defaults are the same figures).
func (q Quota) rules() detect.Rules {
	day, week := int64(q.DocumentsPerDay), int64(q.DocumentsPerWeek)
	if day <= 0 && q.Documents > 0 { // a raised hourly quota raises the long ones
		day = max(DefaultQuotaDay, 6*int64(q.Documents))
	}
	if week <= 0 && q.Documents > 0 {
		week = max(DefaultQuotaWeek, 30*int64(q.Documents))
	}
	r := detect.Rules{
		Hour:        detect.Limit{Max: int64(q.Documents), Window: q.Window},
		Redemptions: detect.Limit{Max: int64(q.Redemptions), Window: q.Window},
		Day:         detect.Limit{Max: day},
		Week:        detect.Limit{Max: week},
		Burst:       detect.Limit{Max: int64(q.Burst), Window: q.BurstWindow},
		Undecided:   detect.Limit{Max: int64(q.Undecided)},
		Grace:       q.UndecidedGrace,
		DecideBurst: detect.Limit{Max: int64(q.DecisionBurst), Window: q.BurstWindow},
		DecideHour:  detect.Limit{Max: int64(q.Decisions), Window: q.Window},
		Unviewed:    detect.Limit{Max: int64(q.Unviewed)},
		HandedOn:    detect.Limit{Max: int64(q.HandedOn), Window: q.Window},
	}
	return r
}

// principalMAC keys per-principal state in the store without naming the
// principal in a key.
func (v *Vault) principalMAC(principal string) string {
	sys, _ := v.keyset()
	m := hmac.New(sha256.New, sys.indexKey)
	m.Write([]byte("idvault principal v1\x00"))
	m.Write([]byte(principal))
	return hex.EncodeToString(m.Sum(nil))
}

// observe feeds one event to the detector, raises its alerts and says
// whether the request must be refused: over a quota always, over any alert
// threshold unless Config.Detection.AlertOnly (decided by the count's ticket, so a
// parallel burst gets no more than the threshold, whatever the timing of
// the freeze marker). A detector error refuses (fail closed).
func (v *Vault) observe(ctx context.Context, e detect.Event, principal, remote, object string) error {
	out, err := v.detector.Observe(ctx, e)
	if errors.Is(err, detect.ErrCountsLost) {
		// Redis forgot the counts: rebuild them (or wait for the rebuild)
		// and count this event on them; refused meanwhile.
		if rerr := v.restoreCounts(ctx); rerr != nil {
			err = fmt.Errorf("%w (rebuilding them: %w)", err, rerr)
		} else {
			out, err = v.detector.Observe(ctx, e)
		}
	}
	if err != nil {
		return fmt.Errorf("vault: abuse detector: %w: %w", ErrQuotaExceeded, err)
	}
	for _, a := range out.Alerts {
		al := Alert{Kind: kindOf(a.Rule), Object: object, Detail: a.String()}
		if a.Principal != "" {
			al.Principal = principal
		}
		if a.Addr != "" || a.Principal != "" {
			al.RemoteAddr = remote
		}
		v.alert(ctx, al)
	}
	switch {
	case out.Refuse:
		return ErrQuotaExceeded
	case out.Over && v.freezes() && principal != "" && e.Kind != detect.Refusal:
		return ErrFrozen
	}
	return nil
}

func kindOf(rule string) AlertKind {
	switch rule {
	case detect.RuleBurst:
		return AlertBulk
	case detect.RuleUndecided:
		return AlertUndecided
	case detect.RuleVaultUndecided, detect.RuleVaultVolume:
		return AlertVolume
	case detect.RuleProbe, detect.RuleProbeDay:
		return AlertProbing
	case detect.RuleDecideBurst:
		return AlertDecisions
	case detect.RuleUnviewed:
		return AlertUnviewed
	case detect.RuleHandedOn:
		return AlertHandedOn
	default:
		return AlertQuota
	}
}

func (v *Vault) eventFor(kind detect.Kind, principal string) detect.Event {
	e := detect.Event{Kind: kind, Time: v.now()}
	if principal != "" {
		e.Principal = v.principalMAC(principal)
		if v.cfg.Detection.QuotaFor != nil {
			r := v.cfg.Detection.QuotaFor(principal).rules()
			e.Rules = &r
		}
	}
	return e
}

// checkGrantQuota counts a grant of id to principal, refuses it over quota
// (or frozen), and raises the alerts it crosses.
func (v *Vault) checkGrantQuota(ctx context.Context, principal, remote string, id objectID) error {
	v.markLive(ctx)
	mac := v.principalMAC(principal)
	if err := v.checkFrozen(ctx, mac); err != nil {
		return err
	}
	if err := v.observe(ctx, v.eventFor(detect.View, principal), principal, remote, id.String()); err != nil {
		return fmt.Errorf("vault: grant: %w", err)
	}
	return nil
}

// checkRedeemQuota is Redeem's check: the freeze. A redemption is not
// counted again: its token was counted against Quota.Redemptions (and
// Documents) when it was granted, and it redeems once (see
// Quota.Redemptions), so Redeem writes nothing to the Limiter.
func (v *Vault) checkRedeemQuota(ctx context.Context, principal string) error {
	v.markLive(ctx)
	return v.checkFrozen(ctx, v.principalMAC(principal))
}

// freezes reports whether an alert freezes its principal: the default,
// unless Config.Detection.AlertOnly.
func (v *Vault) freezes() bool { return !v.cfg.Detection.AlertOnly }

// checkFrozen takes the principal's keyed hash (principalMAC). A freeze is
// an entry of the state chain (statechain.go), so it holds whatever happens
// to any object in the store, until an audited Unfreeze; it is honoured
// even under Config.Detection.AlertOnly. A chain that cannot be read or
// trusted refuses (fail closed).
func (v *Vault) checkFrozen(ctx context.Context, mac string) error {
	frozen, err := v.chain.isFrozen(ctx, mac)
	switch {
	case err != nil:
		return fmt.Errorf("vault: checking freeze: %w", err)
	case frozen:
		return ErrFrozen
	}
	return nil
}

// checkFrozenBeforeRelease is the last check before the first byte of a
// redemption leaves: a principal frozen since its quota check (a canary
// it touched in a parallel request, an alert raised on another instance)
// gets nothing. Redeem calls it after the audit record and the spend are
// durable, just before returning the reader.
func (v *Vault) checkFrozenBeforeRelease(ctx context.Context, principal string) error {
	if err := v.checkFrozen(ctx, v.principalMAC(principal)); err != nil {
		return fmt.Errorf("vault: redeem: %w", err)
	}
	return nil
}

// noteRefusal feeds the probing detector: a burst of refused tokens from
// one principal or one remote address raises an alert. Past the day's
// threshold a key costs one cache lookup per refusal (no Limiter write),
// so a flood of bogus tokens does not load the shared store.
func (v *Vault) noteRefusal(ctx context.Context, principal, remote, tokenID string) {
	e := v.eventFor(detect.Refusal, principal)
	host := remoteHost(remote)
	if host != "" {
		// Keyed like principals: no raw address in a limiter key (and IPv6
		// colons are outside the store's key alphabet).
		e.Addr = v.principalMAC("addr\x00" + host)
	}
	_ = v.observe(ctx, e, principal, host, "")
}

func remoteHost(addr string) string {
	if addr == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return clip(addr, 64)
}

// alert writes the alert to the audit log, tells Config.Detection.OnAlert, and
// freezes the principal (unless Config.Detection.AlertOnly). The detector
// raises each alert once per rule, principal and window (a create-only
// marker in the Limiter), so a parallel burst raises one.
func (v *Vault) alert(ctx context.Context, a Alert) {
	a.Time = v.now().UTC()
	// Recorded even when the call that raised it is at its deadline.
	_ = v.auditLate(ctx, audit.Record{Time: a.Time, Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: string(a.Kind),
		Principal: clip(a.Principal, 256), RemoteAddr: clip(a.RemoteAddr, 128), Object: a.Object, Detail: clip(a.Detail, 500)})
	if v.cfg.Detection.OnAlert != nil {
		v.cfg.Detection.OnAlert(a)
	}
	if v.freezes() && a.Principal != "" && a.Kind != AlertFrozen {
		if v.freeze(ctx, a.Principal) {
			v.alert(ctx, Alert{Kind: AlertFrozen, Principal: a.Principal, Detail: "after " + string(a.Kind)})
		}
	}
}

// freeze writes the freeze of principal to the state chain, unless it is
// frozen already; it reports whether it wrote it. Of parallel alerts for
// one principal, on any instance, one freezes it.
func (v *Vault) freeze(ctx context.Context, principal string) bool {
	mac := v.principalMAC(principal)
	_, err := v.chain.appendUnless(ctx, audit.StateFreeze, mac, func() bool { f, _ := v.chain.frozenNow(mac); return f })
	if err != nil {
		if !errors.Is(err, errStateUnchanged) {
			v.tel.log.Warn("vault: freeze not recorded in the state chain", "err", err)
		}
		return false
	}
	v.view.witnessState(ctx)
	return true
}

// Unfreeze lifts the freeze an alert set on principal, audited with the
// acting principal (by) and the principal unfrozen.
func (a Admin) Unfreeze(ctx context.Context, principal string, by Actor) error {
	v := a.v
	if err := v.checkActor("unfreeze", by); err != nil {
		return err
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: "unfrozen",
		Principal: by.principal(), Detail: clip("unfroze "+clip(principal, 256)+": "+by.Reason, 500)}); err != nil {
		return err
	}
	mac := v.principalMAC(principal)
	_, err := v.chain.appendUnless(ctx, audit.StateUnfreeze, mac, func() bool { f, _ := v.chain.frozenNow(mac); return !f })
	if errors.Is(err, errStateUnchanged) {
		return nil // not frozen
	}
	if err != nil {
		return fmt.Errorf("vault: unfreeze: %w", err)
	}
	v.view.witnessState(ctx)
	return nil
}
