package vault

import (
	"context"
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

// EventDecide is the audit event of a decision.
const EventDecide audit.Event = "decide"

// Decide records what by.Principal decided about document id: Approved
// and Rejected delete it (with Delete, so a held document is refused with
// ErrHeld and stays); HandedOn keeps it. Either way the decision reaches
// the abuse detector: a principal that opens documents and decides none
// of them within minutes raises AlertUndecided, however slowly it goes.
// The decision is audited (event "decide") before the delete.
func (v *Vault) Decide(ctx context.Context, id string, d Decision, by Actor) error {
	if v.isClosed() {
		return ErrClosed
	}
	if err := by.check("decide"); err != nil {
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
	_, key, err := v.loadRecord(ctx, oid)
	if err != nil {
		return err
	}
	key.Destroy()
	// Only by someone who viewed it: a stolen identity must not destroy
	// documents it never opened.
	if err := v.checkViewed(ctx, by.Principal, oid); err != nil {
		_ = v.audit(ctx, audit.Record{Event: EventDecide, Outcome: audit.OutcomeRefused, Object: oid.String(),
			Principal: by.principal(), Reason: reasonOf(err), Detail: clip(string(d.Verdict), 500)})
		// Counted like a probe: a burst of them alerts (and freezes).
		v.noteRefusal(ctx, by.Principal, "", "")
		return err
	}
	detail := string(d.Verdict)
	if d.Note != "" {
		detail += ": " + clip(d.Note, 200)
	}
	if err := v.audit(ctx, audit.Record{Event: EventDecide, Outcome: audit.OutcomeOK, Object: oid.String(),
		Principal: by.principal(), Reason: string(d.Verdict), Detail: clip(detail, 500)}); err != nil {
		return err
	}
	if _, err := v.detector.Observe(ctx, v.eventFor(detect.Decision, by.Principal)); err != nil {
		return fmt.Errorf("vault: decide: abuse detector: %w", err)
	}
	if d.Verdict == HandedOn {
		return nil
	}
	return v.Delete(ctx, id, Actor{Principal: by.Principal, Reason: clip("decision "+detail, 500)})
}
