package vault

import (
	"fmt"
	"sync"
)

// unfoldedReleases counts the releases of this Vault whose record the
// folder could not fold into the audit log (the append failed or came too
// late, the queue was full, the Vault was closing): each is durable in its
// spend entry and waits for adoption (ledger.go). SyncAudit reports them.
//
// Memory is O(1): only a count. An adoption pass that finds every spend
// entry's record in a log (the logs are read first, logview.go) clears
// it; until then SyncAudit keeps saying that releases may be missing,
// which errs on the side of the truth.
type unfoldedReleases struct {
	mu sync.Mutex
	n  int
}

// add counts it, if it is a release.
func (u *unfoldedReleases) add(it foldItem) {
	if it.void || it.synced != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n++
}

// clear is told that every spend entry's record is in a log.
func (u *unfoldedReleases) clear() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n = 0
}

// check returns an error wrapping ErrAuditUnavailable while some releases
// may be missing from the log.
func (u *unfoldedReleases) check() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == 0 {
		return nil
	}
	return fmt.Errorf("vault: sync audit: %d releases not yet in the audit log (durable in their spend entries; "+
		"the next Open or Sweep adopts them once %s old): %w", u.n, adoptAfter, ErrAuditUnavailable)
}
