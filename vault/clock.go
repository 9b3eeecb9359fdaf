package vault

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// The clock check.
//
// Deadlines decide what is irreversible: a token is spent while it is valid,
// a document is shredded once its deadline has passed, a spend entry is
// collected once no instance can accept its token any more. An instance
// whose clock is off (NTP broken for hours, a VM restored from a snapshot)
// would decide them wrongly. So before it spends, shreds, collects the
// ledger or stores a new deadline, an instance compares its clock
// (Config.Now) with the store's (store.Clock: the S3 Date, the file times of
// a filesystem), and refuses with ErrClockSkew, raising AlertClockSkew, while
// they disagree by more than Config.Access.ClockLeeway plus the store clock's
// resolution. It resumes on its own once they agree again. Refusals that do
// not depend on this clock's verdict (a forged token, a wrong principal)
// are unaffected, and reading, granting and auditing go on.
//
// A store that does not implement store.Clock cannot be checked; the vault
// then trusts its own clock (docs/storage-attacks.md says so).

// AlertClockSkew: this instance's clock disagrees with the store's; it
// refuses to spend, sweep or shred until they agree. Raised once per episode
// (and again every ten minutes while it lasts); no principal is named.
const AlertClockSkew AlertKind = "clock-skew"

// clockResolution is what a store clock reading may be off by on its own
// (the S3 Date has one-second resolution).
const clockResolution = time.Second

// clockRealert is how often a skew that lasts is alerted again.
const clockRealert = 10 * time.Minute

type clockState struct {
	mu      sync.Mutex
	skewed  bool
	alerted time.Time // monotonic: when the current episode was last alerted
}

// checkClock returns nil when this instance's clock agrees with the store's
// (or the store cannot tell its time), and otherwise an error wrapping
// ErrClockSkew, after alerting. what names the refused step.
func (v *Vault) checkClock(ctx context.Context, what string) error {
	c, ok := v.st.(store.Clock)
	if !ok {
		return nil
	}
	st, err := c.Time(ctx)
	if err != nil {
		return fmt.Errorf("vault: %s: reading the store's time: %w", what, err)
	}
	mine := v.now()
	d := mine.Sub(st)
	if d < 0 {
		d = -d
	}
	if d <= v.cfg.Access.ClockLeeway+clockResolution {
		v.clockSt.mu.Lock()
		v.clockSt.skewed = false
		v.clockSt.mu.Unlock()
		return nil
	}
	v.clockSt.mu.Lock()
	alert := !v.clockSt.skewed || time.Since(v.clockSt.alerted) > clockRealert
	v.clockSt.skewed = true
	if alert {
		v.clockSt.alerted = time.Now()
	}
	v.clockSt.mu.Unlock()
	ahead := "ahead of"
	if mine.Before(st) {
		ahead = "behind"
	}
	off := d.Round(time.Second)
	if alert {
		v.alert(ctx, Alert{Kind: AlertClockSkew,
			Detail: fmt.Sprintf("this instance's clock is %s %s the store's; spend, sweep and shred refused", off, ahead)})
	}
	return fmt.Errorf("vault: %s: clock %s %s the store's: %w", what, off, ahead, ErrClockSkew)
}
