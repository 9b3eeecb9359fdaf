package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/detect"
)

// Verdict is what a reviewer decided about a document.
type Verdict string

// Verdicts.
const (
	// Approved: the document passed the check; it is deleted (the check
	// is done, the image has no further use).
	Approved Verdict = "approved"
	// Rejected: the document failed the check; it is deleted too.
	Rejected Verdict = "rejected"
	// HandedOn: the reviewer passed the document on (escalated, asked a
	// colleague); it stays, and the view counts as dealt with.
	HandedOn Verdict = "handed-on"
)

// Decision is a reviewer's outcome for one document.
type Decision struct {
	Verdict Verdict
	// Note is recorded in the audit log (optional, clipped to 200 bytes;
	// no personal data).
	Note string
}

// Decide records what by.Principal decided about document id: Approved
// and Rejected delete it (with Delete, so a held document is refused with
// ErrHeld and stays); HandedOn keeps it. Either way the decision reaches
// the abuse detector: a principal that opens documents and decides none
// of them within minutes raises AlertUndecided, however slowly it goes.
//
// Decisions are counted per principal, like views: more than
// Quota.DecisionBurst deleting decisions within the burst window raise
// AlertDecisions, more than Quota.Unviewed decisions in the hour beyond the
// documents the principal was granted raise AlertUnviewed; more than
// Quota.HandedOn
// hand-ons in the hour that are also most of what it viewed raise
// AlertHandedOn; past Quota.Decisions an hour a decision is refused
// (ErrQuotaExceeded). As for grants, the count decides: unless
// Config.Detection.AlertOnly, the decision that crosses a threshold is refused
// (ErrFrozen) before anything is deleted, so of any number of parallel
// decisions no more than the threshold's worth are carried out (fewer when
// the freeze lands before a request's check), and the principal is frozen.
// A frozen principal's decisions are refused.
// Deciding about a canary raises AlertCanary, as touching one does, and is
// carried out like any decision.
//
// The decision is audited (event "decide") before the delete; a refused
// decision is audited as a refusal.
func (v *Vault) Decide(ctx context.Context, id string, d Decision, by Actor) error {
	if err := v.checkActor("decide", by); err != nil {
		return err
	}
	switch d.Verdict {
	case Approved, Rejected, HandedOn:
	default:
		return fmt.Errorf("vault: decide: unknown verdict: %w", ErrInvalidArgument)
	}
	oid, err := parseObjectID(id)
	if err != nil {
		return err
	}
	// Only a live document can be decided: decisions about made-up IDs
	// must not offset a principal's undecided views.
	md, key, err := v.loadRecord(ctx, oid)
	if err != nil {
		return err
	}
	key.Destroy()
	detail := string(d.Verdict)
	if d.Note != "" {
		detail += ": " + clip(d.Note, 200)
	}
	rec := audit.Record{Event: EventDecide, Object: oid.String(), Principal: by.principal(), Reason: string(d.Verdict), Detail: clip(detail, 500)}
	// A frozen principal is refused first, before the wait for its views.
	if err := v.checkFrozen(ctx, v.principalMAC(by.Principal)); err != nil {
		err = fmt.Errorf("vault: decide: %w", err)
		rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
		if aerr := v.audit(ctx, rec); aerr != nil {
			return fmt.Errorf("%w (and %w)", err, aerr)
		}
		return err
	}
	// Only by someone who viewed it: a stolen identity must not destroy
	// documents it never opened.
	if err := v.checkViewed(ctx, by.Principal, oid); err != nil {
		if !errors.Is(err, ErrNotViewed) {
			return err // the log view could not answer: refused, not counted
		}
		if md.Canary {
			v.touchCanary(ctx, EventDecide, by.Principal, "", oid)
		}
		return v.refuseDecision(ctx, rec, err)
	}
	if err := v.countDecision(ctx, by.Principal, oid, d.Verdict); err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
		if aerr := v.audit(ctx, rec); aerr != nil {
			return fmt.Errorf("%w (and %w)", err, aerr)
		}
		return err
	}
	if md.Canary {
		v.touchCanary(ctx, EventDecide, by.Principal, "", oid)
	}
	rec.Outcome = audit.OutcomeOK
	if err := v.audit(ctx, rec); err != nil {
		return err
	}
	if d.Verdict == HandedOn {
		return nil
	}
	return v.Admin().Delete(ctx, id, Actor{Principal: by.Principal, Reason: clip("decision "+detail, 500)})
}

// refuseDecision answers a decision checkViewed refused (err wraps
// ErrNotViewed): audited as a refusal with its reason, and counted like a
// refused token, so a principal trying decisions it may not make raises
// AlertProbing (and is frozen) as a prober of tokens does.
func (v *Vault) refuseDecision(ctx context.Context, rec audit.Record, err error) error {
	err = fmt.Errorf("vault: decide %s: %w", rec.Object, err)
	v.noteRefusal(ctx, rec.Principal, "", "")
	rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
	if aerr := v.audit(ctx, rec); aerr != nil {
		return fmt.Errorf("%w (and %w)", err, aerr)
	}
	return err
}

// countDecision counts a decision of principal's and refuses it when the
// principal is frozen, over its decision quota, or (unless AlertOnly) past
// any decision threshold.
func (v *Vault) countDecision(ctx context.Context, principal string, id objectID, verdict Verdict) error {
	v.markLive(ctx)
	if err := v.checkFrozen(ctx, v.principalMAC(principal)); err != nil {
		return fmt.Errorf("vault: decide: %w", err)
	}
	e := v.eventFor(detect.Decision, principal)
	e.HandedOn = verdict == HandedOn
	if err := v.observe(ctx, e, principal, "", id.String()); err != nil {
		return fmt.Errorf("vault: decide: %w", err)
	}
	return nil
}
