package vault

import (
	"fmt"
	"strings"
)

// Actor names who performs an administrative action (Delete, Hold,
// Release, EraseSubject, Unfreeze, RotateTokenKey, Sweep) and why. Both go
// to the audit log, so a security team can answer "who did this". Principal
// is required: the calls refuse an empty one with ErrInvalidArgument.
// Keep secrets and raw subject identifiers out of both fields.
type Actor struct {
	// Principal is the acting account: an operator, a reviewer, a service
	// identity such as "cron:sweep". Required; at most 256 bytes of UTF-8.
	Principal string
	// Reason says why (a ticket, "member left", "reviewed-approved").
	// Optional; clipped to 200 bytes in the audit log.
	Reason string
}

func (a Actor) check(op string) error {
	if !validName(a.Principal, 256) || strings.TrimSpace(a.Principal) == "" {
		return fmt.Errorf("vault: %s: the acting principal is required (1-256 bytes of UTF-8): %w", op, ErrInvalidArgument)
	}
	return nil
}

func (a Actor) principal() string { return clip(a.Principal, 256) }
func (a Actor) reason() string    { return clip(a.Reason, 200) }
