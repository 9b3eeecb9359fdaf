package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/idvault/idvault/vault/audit"
)

// audit appends r durably. Its error wraps ErrAuditUnavailable: callers
// that release data or change state stop there (fail closed).
func (v *Vault) audit(ctx context.Context, r audit.Record) error {
	_, err := v.auditRecord(ctx, r)
	return err
}

// auditRecord is audit, returning the record as written (log and seq set).
func (v *Vault) auditRecord(ctx context.Context, r audit.Record) (audit.Record, error) {
	if r.Time.IsZero() {
		r.Time = v.now().UTC()
	}
	w, err := v.appendObserved(ctx, r) // logs and metrics: telemetry.go
	if err != nil {
		return w, fmt.Errorf("vault: audit %s: %w: %w", r.Event, ErrAuditUnavailable, err)
	}
	return w, nil
}

// reasonOf names a refusal precisely for the audit log (never for the
// HTTP client, which sees one uniform answer).
func reasonOf(err error) string {
	for _, c := range []struct {
		err    error
		reason string
	}{
		{errHoldInDoubt, "hold-in-doubt"},
		{errStateInDoubt, "state-in-doubt"},
		{errViewInDoubt, "logs-in-doubt"},
		{ErrTokenInvalid, "token-invalid"},
		{ErrTokenExpired, "token-expired"},
		{ErrTokenReplayed, "token-replayed"},
		{ErrWrongPrincipal, "wrong-principal"},
		{ErrNotFound, "not-found"},
		{ErrExpired, "object-expired"},
		{ErrTampered, "tampered"},
		{ErrKEKUnavailable, "kek-unavailable"},
		{ErrFrozen, "frozen"},
		{ErrClockSkew, "clock-skew"},
		{ErrNotViewed, "not-viewed"},
		{ErrQuotaExceeded, "quota-exceeded"},
		{ErrAuditUnavailable, "audit-unavailable"},
		{ErrUnsupportedContent, "unsupported-content"},
		{ErrTooLarge, "too-large"},
		{ErrTruncated, "truncated"},
		{ErrInvalidArgument, "invalid-argument"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline-exceeded"},
	} {
		if errors.Is(err, c.err) {
			return c.reason
		}
	}
	return "error"
}

// The audit events and outcomes the vault adds to those of package audit.
const (
	// EventDecide is the audit event of a decision.
	EventDecide audit.Event = "decide"
	// EventSubjectAccess is the audit event ListSubject records.
	EventSubjectAccess audit.Event = "subject-access"
	// OutcomeStarted marks the audit record written before a long
	// administrative run (Rewrap) changes anything; its end is recorded with
	// audit.OutcomeOK or audit.OutcomeError.
	OutcomeStarted audit.Outcome = "started"
)
