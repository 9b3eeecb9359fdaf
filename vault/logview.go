package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// What the logs say.
//
// A spend entry (redeemed/<token-id>) decides single use between
// instances, but it is a small deletable object: whoever holds the storage
// credentials can delete it, or put back the ledger from a backup taken
// before the spend. Its release record, though, is folded into an audit log
// within a fraction of a second, and the logs cannot be cut back unnoticed.
// So every instance follows every log (audit.Follower: it reads new batches
// by name every viewPollEvery) and keeps, in memory:
//
//   - every token released (or whose spend was unconfirmed) whose
//     acceptance window may still be open anywhere: Redeem refuses such a
//     token whatever has happened to its spend entry;
//   - who was handed which document within DecideWindow: Decide accepts a
//     decision only from a principal that viewed the document;
//   - the longest state chain and the largest size of each log that any
//     log's witness records vouch for: a chain or a log found shorter is a
//     rollback.
//
// At Open it reads each log's records of the last viewHorizon (and at
// least witnessBack before each log's last record, where an idle log's
// last witness records are). What a running instance has read it never
// forgets, whatever is deleted later. Each instance also writes witness
// records (audit.EventWitness) into its own log: the state chain's head
// after each change and every witnessEvery, and the size it has read of
// every other log, so that each log vouches for the others.
//
// The one window left: a release another instance made becomes visible
// here only when its record is in that instance's log (its folder gathers
// for up to foldGather) and this instance has polled it (viewPollEvery).
// (or, for an instance started within viewDiscover, the discovery of its
// log). Within that window (measured in TestSpentWindowOtherInstance),
// deleting the spend entry at once lets a second instance accept the token
// again; an instance never accepts twice a token it spent itself.
const (
	viewPollEvery  = 200 * time.Millisecond
	viewDiscover   = 2 * time.Second  // how often new logs are looked for
	viewGapCheck   = 10 * time.Second // how often a deleted batch is looked for
	viewStale      = 2 * time.Second  // Redeem polls first when the view is older
	witnessEvery   = 10 * time.Minute // periodic witness records
	witnessBack    = 2 * witnessEvery // read at least this far back in each log at Open
	maxViewEntries = 1 << 21          // bound on remembered tokens and views; beyond: in doubt
)

// errViewInDoubt: the audit logs were cut back (a log shorter than another
// log's witness record vouches for, a batch deleted), so which tokens were
// spent cannot be established: Redeem refuses.
var errViewInDoubt = fmt.Errorf("vault: the audit logs were rolled back or cannot be read in order; spends in doubt: %w", ErrTampered)

// spentToken is what the view knows of a spent token: until when it must
// stay refused, and whether its release (or spend-unconfirmed refusal) was
// read from a log (false: this instance spent it and has not read it back).
type spentToken struct {
	keep   time.Time
	logged bool
}

// viewKeepMargin: a spent token is remembered this long past its keep-until
// time, so that Sweep, which collects spend entries then, still finds
// their records here.
const viewKeepMargin = 2 * time.Hour

type viewKey struct {
	principal string
	object    objectID
}

type logView struct {
	v *Vault

	fmu ctxLock // guards f and the poll bookkeeping
	f   *audit.Follower
	hs  *hiddenStore // what f reads through

	lastDiscover, lastGapCheck time.Time // monotonic

	mu         sync.Mutex // guards the fields below
	spent      map[[16]byte]spentToken
	inserts    int
	views      map[viewKey]time.Time
	claimLen   int64           // the longest state chain a witness record vouches for
	claimHead  audit.StateHash // its head
	logClaims  map[string]int64
	witnessed  map[string]int64 // what this instance last vouched for, per log
	witnessedS int64            // the chain length it last vouched for
	doubt      error
	alerted    bool
	synced     time.Time // monotonic: the last complete poll
	from       time.Time // records before this time (at Open) were not read

	ownMu sync.Mutex                 // guards own
	own   map[string]map[int64]int64 // batches this instance wrote, taken already: log → first → records
}

// maxOwnBatches bounds the batches remembered per log as taken (the
// follower consumes them at its next poll); beyond it, batches are read
// back from the store like any other, which is always correct.
const maxOwnBatches = 1 << 14

// ownBatch takes the records of a batch this instance's appender has just
// written (AppenderOptions.OnBatch) into the view, as if it had read them
// from the log, and lets the follower move past the batch without reading
// it back: an instance knows its own records. The records are exactly
// those the store now holds at log/first (the write succeeded); a batch
// whose write failed, and may have landed after all, is never passed here,
// so it is read from the store. A log this instance no longer writes is
// read on from where its own batches ended, like any other log.
func (lv *logView) ownBatch(log string, first, n int64, recs []audit.Record) {
	for _, r := range recs {
		_ = lv.record(r)
	}
	lv.ownMu.Lock()
	defer lv.ownMu.Unlock()
	if lv.own == nil {
		lv.own = map[string]map[int64]int64{}
	}
	m := lv.own[log]
	if m == nil {
		m = map[int64]int64{}
		lv.own[log] = m
	}
	if len(m) < maxOwnBatches {
		m[first] = n
	}
}

// taken is the follower's SetTaken callback: the records of log's batch at
// pos when this instance wrote and took it, else 0. Batches before pos
// (taken while the follower had read past them already) are forgotten.
func (lv *logView) taken(log string, pos int64) int64 {
	lv.ownMu.Lock()
	defer lv.ownMu.Unlock()
	m := lv.own[log]
	if m == nil {
		return 0
	}
	n := m[pos]
	for first := range m {
		if first <= pos {
			delete(m, first)
		}
	}
	if len(m) == 0 {
		delete(lv.own, log)
	}
	return n
}

// viewHorizon is how far back Open reads the logs: every token whose
// acceptance window may still be open (Redeem refuses tokens that live
// longer than Config.Access.MaxGrantTTL), and DecideWindow.
func (v *Vault) viewHorizon() time.Duration {
	return max(v.cfg.Access.MaxGrantTTL+2*MaxLeeway+spendWindow+time.Minute, DecideWindow)
}

func newLogView(v *Vault, sys *systemKeys) (*logView, error) {
	hs := newHiddenStore(v.st)
	f, err := audit.NewFollower(hs, sys.auditVerifier)
	if err != nil {
		return nil, err
	}
	lv := &logView{v: v, f: f, hs: hs, fmu: newCtxLock(), spent: map[[16]byte]spentToken{}, views: map[viewKey]time.Time{},
		logClaims: map[string]int64{}, witnessed: map[string]int64{}}
	f.SetTaken(lv.taken)
	return lv, nil
}

// start reads the logs' recent records (Open), then checks the state chain
// and the logs against what the witness records vouch for.
func (lv *logView) start(ctx context.Context) error {
	if err := lv.fmu.lock(ctx); err != nil {
		return err
	}
	lv.from = lv.v.now().Add(-lv.v.viewHorizon())
	err := lv.f.Start(ctx, lv.from, witnessBack, lv.record)
	if err == nil {
		err = lv.f.CheckGaps(ctx)
	}
	lv.lastDiscover, lv.lastGapCheck = time.Now(), time.Now()
	lv.fmu.unlock()
	if errors.Is(err, audit.ErrLogGap) {
		err = lv.recoverGap(ctx, err)
	}
	if err != nil {
		return fmt.Errorf("vault: reading the audit logs: %w", err)
	}
	lv.checkClaims(ctx)
	lv.mu.Lock()
	lv.synced = time.Now()
	lv.mu.Unlock()
	return nil
}

// poll reads what the logs gained since the last poll (and looks for new
// logs every viewDiscover).
func (lv *logView) poll(ctx context.Context) error { return lv.pollLogs(ctx, false) }

// sync is poll that also looks for new logs now: what a decision that
// something is in no log (adoption, a refused decision) must read first.
func (lv *logView) sync(ctx context.Context) error { return lv.pollLogs(ctx, true) }

func (lv *logView) pollLogs(ctx context.Context, discoverNow bool) error {
	if err := lv.fmu.lock(ctx); err != nil {
		return err
	}
	discover := discoverNow || time.Since(lv.lastDiscover) >= viewDiscover
	err := lv.f.Poll(ctx, discover, lv.record)
	if err == nil && discover {
		lv.lastDiscover = time.Now()
	}
	if err == nil && time.Since(lv.lastGapCheck) >= viewGapCheck {
		err = lv.f.CheckGaps(ctx)
		lv.lastGapCheck = time.Now()
	}
	lv.fmu.unlock()
	if errors.Is(err, audit.ErrLogGap) {
		err = lv.recoverGap(ctx, err)
	}
	if err != nil {
		return err
	}
	lv.checkClaims(ctx)
	lv.mu.Lock()
	lv.synced = time.Now()
	lv.mu.Unlock()
	return nil
}

// fresh polls when the view is older than viewStale.
func (lv *logView) fresh(ctx context.Context) error {
	lv.mu.Lock()
	ok := !lv.synced.IsZero() && time.Since(lv.synced) < viewStale
	lv.mu.Unlock()
	if ok {
		return nil
	}
	if err := lv.poll(ctx); err != nil {
		return fmt.Errorf("vault: reading the audit logs: %w", err)
	}
	return nil
}

// record takes one record into the view (the Follower's callback).
func (lv *logView) record(r audit.Record) error {
	switch {
	case r.Event == audit.EventRedeem && (r.Outcome == audit.OutcomeOK || r.Reason == audit.ReasonSpendUnconfirmed):
		tok, ok := parseTokenHex(r.TokenID)
		if !ok {
			return nil
		}
		lv.noteSpent(tok, releaseKeepUntil(r), true)
		if r.Outcome == audit.OutcomeOK {
			if id, err := parseObjectID(r.Object); err == nil {
				lv.noteView(r.Principal, id, r.Time)
			}
		}
	case r.Event == audit.EventWitness && r.Reason == audit.ReasonStateHead:
		n, h, err := audit.ParseStateHead(r.Detail)
		if err != nil {
			return nil
		}
		lv.mu.Lock()
		if n > lv.claimLen {
			lv.claimLen, lv.claimHead = n, h
		}
		lv.mu.Unlock()
	case r.Event == audit.EventWitness && r.Reason == audit.ReasonLogHead:
		log, n, err := audit.ParseLogHead(r.Detail)
		if err != nil || log == r.Log {
			return nil
		}
		lv.mu.Lock()
		lv.logClaims[log] = max(lv.logClaims[log], n)
		lv.mu.Unlock()
	}
	return nil
}

// releaseKeepUntil is until when a release record's token must stay
// refused: its spend entry's keep-until time, or, for a record without one
// (a spend-unconfirmed refusal), the longest any token lives past it.
func releaseKeepUntil(r audit.Record) time.Time {
	if s, ok := strings.CutPrefix(r.Detail, audit.LedgerKeepUntilPrefix); ok {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t
		}
	}
	return r.Time.Add(MaxGrantTTLLimit + ledgerHorizon)
}

func parseTokenHex(s string) ([16]byte, bool) {
	var id [16]byte
	if len(s) != 32 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// noteSpent remembers a spent token until keepUntil; logged says its
// record was read from a log (Redeem calls it for its own spends at once,
// before the record is folded).
func (lv *logView) noteSpent(tok [16]byte, keepUntil time.Time, logged bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	e := lv.spent[tok]
	if keepUntil.After(e.keep) {
		e.keep = keepUntil
	}
	e.logged = e.logged || logged
	lv.spent[tok] = e
	lv.pruneLocked()
}

// allLogged reports whether the records of all of toks were read from a
// log.
func (lv *logView) allLogged(toks map[[16]byte]bool) bool {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for tok := range toks {
		if !lv.spent[tok].logged {
			return false
		}
	}
	return true
}

// logged reports whether the release (or void) record of tok was read from
// a log.
func (lv *logView) logged(tok [16]byte) bool {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.spent[tok].logged
}

func (lv *logView) noteView(principal string, id objectID, at time.Time) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	k := viewKey{principal, id}
	if at.After(lv.views[k]) {
		lv.views[k] = at
	}
	lv.pruneLocked()
}

// pruneLocked forgets what can no longer matter, when the maps grow: spent
// tokens past their keep-until time and views older than DecideWindow.
// Beyond maxViewEntries the view is in doubt rather than forgetful.
func (lv *logView) pruneLocked() {
	lv.inserts++
	n := len(lv.spent) + len(lv.views)
	if lv.inserts%4096 != 0 && n < maxViewEntries {
		return
	}
	now := lv.v.now()
	for k, e := range lv.spent {
		if now.After(e.keep.Add(viewKeepMargin)) {
			delete(lv.spent, k)
		}
	}
	for k, t := range lv.views {
		if now.Sub(t) > DecideWindow+time.Minute {
			delete(lv.views, k)
		}
	}
	if len(lv.spent)+len(lv.views) >= maxViewEntries && lv.doubt == nil {
		lv.doubt = fmt.Errorf("vault: more than %d spent tokens and views within their windows: %w", maxViewEntries, errViewInDoubt)
	}
}

// isSpent reports whether a release of tok is known (polling first when
// the view is stale). An error means the view cannot vouch: refuse.
func (lv *logView) isSpent(ctx context.Context, tok [16]byte) (bool, error) {
	if err := lv.fresh(ctx); err != nil {
		return false, err
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.doubt != nil {
		return false, errViewInDoubt
	}
	_, ok := lv.spent[tok]
	return ok, nil
}

// viewed reports whether principal was handed document id within
// DecideWindow (polling once more when it was not, in case the release is
// on its way from another instance).
func (lv *logView) viewed(ctx context.Context, principal string, id objectID) (bool, error) {
	check := func() bool {
		lv.mu.Lock()
		defer lv.mu.Unlock()
		t, ok := lv.views[viewKey{clip(principal, 256), id}]
		return ok && lv.v.now().Sub(t) <= DecideWindow
	}
	if check() {
		return true, nil
	}
	// A release made on another instance reaches its log within
	// foldGather and this view at its next poll: wait that long before
	// refusing (a refusal is not on a hot path).
	deadline := time.Now().Add(foldGather + 2*viewPollEvery)
	for {
		if err := lv.sync(ctx); err != nil {
			return false, fmt.Errorf("vault: reading the audit logs: %w", err)
		}
		if check() {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(viewPollEvery / 4):
		}
	}
}

// checkClaims compares the state chain and the logs with the longest ones
// a witness record vouches for.
func (lv *logView) checkClaims(ctx context.Context) {
	lv.mu.Lock()
	claimLen, claimHead := lv.claimLen, lv.claimHead
	claims := make(map[string]int64, len(lv.logClaims))
	for l, n := range lv.logClaims {
		claims[l] = n
	}
	lv.mu.Unlock()
	if c := lv.v.chain; c != nil && claimLen > 0 {
		n, head, broken := c.state()
		if broken == nil && (n < claimLen || n == claimLen && head != claimHead) {
			// Perhaps entries written since the chain was read, or hidden
			// behind a delete marker: read on.
			if err := c.followHidden(ctx); err == nil {
				n, head, broken = c.state()
			}
			if broken == nil && n < claimLen {
				c.setBroken(ctx, fmt.Errorf("%w: %d entries; a witness record vouches for %d", audit.ErrStateBroken, n, claimLen))
			} else if broken == nil && n == claimLen && head != claimHead {
				c.setBroken(ctx, fmt.Errorf("%w: entry %d differs from the one a witness record vouches for", audit.ErrStateBroken, n))
			}
		}
	}
	if len(claims) == 0 {
		return
	}
	if lv.fmu.lock(ctx) != nil {
		return
	}
	have := lv.f.Logs()
	lv.fmu.unlock()
	for log, n := range claims {
		if h, ok := have[log]; ok && h >= n {
			continue
		}
		// Not read that far (or not registered: the log may be new to
		// this instance, or its registry entry deleted): read on, through
		// delete markers too.
		if lv.fmu.lock(ctx) != nil {
			return
		}
		found := lv.hs.recovering(func() { _ = lv.f.Poll(ctx, true, lv.record) })
		have = lv.f.Logs()
		lv.fmu.unlock()
		if found > 0 {
			lv.v.alert(ctx, Alert{Kind: AlertTampered, Detail: fmt.Sprintf("%d audit batches hidden behind delete markers: read through; find who deleted them", found)})
		}
		if h, ok := have[log]; ok && h >= n {
			continue
		}
		lv.setDoubt(ctx, fmt.Errorf("log %s holds %d records; a witness record vouches for %d", log, have[log], n))
		return
	}
}

// recoverGap answers a gap in a log (gap wraps audit.ErrLogGap): it reads
// through delete markers where the store keeps versions, and if that does
// not close every gap, the view is in doubt. It returns only store errors.
func (lv *logView) recoverGap(ctx context.Context, gap error) error {
	var err error
	if err := lv.fmu.lock(ctx); err != nil {
		return err
	}
	n := lv.hs.recovering(func() {
		if err = lv.f.Poll(ctx, false, lv.record); err == nil {
			err = lv.f.CheckGaps(ctx)
		}
	})
	lv.fmu.unlock()
	if n > 0 {
		lv.v.alert(ctx, Alert{Kind: AlertTampered, Detail: fmt.Sprintf("%d audit batches hidden behind delete markers: read through; find who deleted them", n)})
	}
	if errors.Is(err, audit.ErrLogGap) {
		lv.setDoubt(ctx, err)
		return nil
	}
	return err
}

func (lv *logView) setDoubt(ctx context.Context, err error) {
	lv.mu.Lock()
	if lv.doubt == nil {
		lv.doubt = err
	}
	alert := !lv.alerted
	lv.alerted = true
	lv.mu.Unlock()
	if alert {
		lv.v.alert(ctx, Alert{Kind: AlertTampered, Detail: clip("audit logs cut back or out of order ("+err.Error()+"): redemptions refused until an operator restores them", 500)})
	}
}

// witnessState appends a state-head witness record (after a change of the
// chain, periodically, and at Close). Best effort: the chain entry is the
// state; the record only lets a later instance see a chain cut back.
func (lv *logView) witnessState(ctx context.Context) {
	c := lv.v.chain
	n, head, broken := c.state()
	if broken != nil || n == 0 {
		return
	}
	if _, err := lv.v.auditRecord(ctx, audit.Record{Event: audit.EventWitness, Outcome: audit.OutcomeOK,
		Reason: audit.ReasonStateHead, Detail: audit.FormatStateHead(n, head)}); err == nil {
		lv.mu.Lock()
		lv.witnessedS = n
		if n > lv.claimLen {
			lv.claimLen, lv.claimHead = n, head
		}
		lv.mu.Unlock()
	}
}

// witnessLogs appends a log-head witness record for every other log that
// grew since this instance last vouched for it.
func (lv *logView) witnessLogs(ctx context.Context) {
	if lv.fmu.lock(ctx) != nil {
		return
	}
	have := lv.f.Logs()
	lv.fmu.unlock()
	own := lv.v.log.LogID()
	for log, n := range have {
		lv.mu.Lock()
		done := lv.witnessed[log] >= n
		lv.mu.Unlock()
		if done || log == own || n == 0 {
			continue
		}
		if _, err := lv.v.auditRecord(ctx, audit.Record{Event: audit.EventWitness, Outcome: audit.OutcomeOK,
			Reason: audit.ReasonLogHead, Detail: audit.FormatLogHead(log, n)}); err != nil {
			return
		}
		lv.mu.Lock()
		lv.witnessed[log] = n
		lv.mu.Unlock()
	}
}

// checkViewed is Decide's gate: a decision (which may destroy the
// document) is accepted only from a principal that was handed the
// document within DecideWindow, according to the audit logs, or one
// Config.Access.DecideWithoutView names.
func (v *Vault) checkViewed(ctx context.Context, principal string, id objectID) error {
	if v.cfg.Access.DecideWithoutView != nil && v.cfg.Access.DecideWithoutView(principal) {
		return nil
	}
	ok, err := v.view.viewed(ctx, principal, id)
	if err != nil {
		return fmt.Errorf("vault: decide: %w", err)
	}
	if !ok {
		return ErrNotViewed
	}
	return nil
}
