package vault

import (
	"fmt"
	"sync"
)

// unfoldedReleases counts the releases of this Vault whose record the
// folder could not fold into the audit log (the append failed or came too
// late, the queue was full, the Vault was closing): each is durable in its
// spend entry and waits for adoption (spend.go). SyncAudit reports them.
//
// It remembers up to maxUnfoldedTracked of their token IDs, so that this
// Vault adopts its own failed folds at once (it knows its folder gave
// up); beyond that only the count grows, and those wait like any other
// instance's entries. An adoption pass that finds every spend entry's
// record in a log (the logs are read first, logview.go) clears it; until
// then SyncAudit keeps saying that releases may be missing, which errs on
// the side of the truth.
type unfoldedReleases struct {
	mu   sync.Mutex
	n    int
	toks map[string]bool
}

const maxUnfoldedTracked = 1 << 16

// add counts it, if it is a release. certain says its record is surely in
// no log: the fold was never tried, or its append failed outright (not by
// a timeout, after which the write may still land).
func (u *unfoldedReleases) add(it foldItem, certain bool) {
	if it.void || it.synced != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n++
	if u.toks == nil {
		u.toks = map[string]bool{}
	}
	if certain && len(u.toks) < maxUnfoldedTracked {
		u.toks[it.tok] = true
	}
}

// mine reports whether tok is a release of this Vault whose record its
// folder surely did not write.
func (u *unfoldedReleases) mine(tok string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.toks[tok]
}

// done forgets tok (adopted).
func (u *unfoldedReleases) done(tok string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.toks, tok)
}

// clear is told that every spend entry's record is in a log.
func (u *unfoldedReleases) clear() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n, u.toks = 0, nil
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
