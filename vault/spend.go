package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Spending a token, and folding and collecting its ledger entry.
//
// The single-use ledger is one thing everywhere in this project: the
// ledger entries on storage (redeemed/<token-id>, and the fold notes under
// ledger-folded/). Their format, and the check that ties them to the logs
// (audit.CheckLedger), are in vault/audit/ledger.go; this file is how the
// vault spends a token, and folds and collects its entry.
//
// Spend. Redeem spends a token with one create-only write of
// redeemed/<token-id> (audit.LedgerEntry): the release record, signed with
// the vault's audit signing key. Of any number of concurrent redemptions of
// one token, exactly one write succeeds (store.PutOptions.IfAbsent); that
// write also makes the release record durable, so nothing is released
// before it returns nil (fail closed) and nothing is released without it.
//
// Acceptance window inside the entry's lifetime. Let L = MaxLeeway: every
// instance's clock is within L of every other's (the bound ClockLeeway
// assumes), and an instance accepts a token until expiry + its own
// ClockLeeway <= expiry + L on its clock. The expiry check starts a
// monotonic timer; Redeem releases only if the spend write returned within
// spendWindow of it, so the store decided the create-only write at the
// latest at (acceptance + spendWindow). On any other instance's clock that
// is at most expiry + L + L + spendWindow. ledgerCollectible keeps every
// entry until expiry + 2L + spendWindow + ledgerMargin on the sweeper's
// clock, so while any instance can still accept a token, and while any
// accepted spend can still reach the store, the token's entry exists and a
// second create-only write fails. This holds for every ClockLeeway
// setting (each is <= L) and every write latency (a slower write is
// refused, not served).
//
// Fold. After the spend, the entry's record is appended to the instance's
// Merkle log by the group-committed Appender, off the client's path, and
// the token is noted under ledger-folded/ (one note per group). An entry
// that no note names and that is older than adoptAfter (a crash between
// spend and fold) is adopted by adoptLedger, which Open starts and Sweep
// must call before it collects entries: it folds each such entry whose
// record is in no log. A collectible entry is far older than adoptAfter,
// so the sweeper never removes an un-folded entry once adoptLedger has
// returned nil.
//
// Invariant (checked by audit.CheckLedger): a release record exists iff
// its spend entry was written, i.e. iff Redeem handed out a reader — up to
// a crash between the entry becoming durable and the first byte leaving,
// which the record cannot tell from a completed release; every spend entry
// is in a log within adoptAfter (plus the next Open or Sweep); no release
// record lacks its spend entry before its keep-until time.
//
// An ambiguous spend (the store errored, or answered after spendWindow: the
// entry may exist) serves nothing; Redeem appends a refusal with reason
// "spend-unconfirmed" and notes the token as void, so the entry is never
// folded as a release. Such a token stays spent if the entry exists.
const (
	// spendWindow bounds the time from the expiry check to the spend
	// write's answer; a spend that answers later is refused.
	spendWindow = 10 * time.Second
	// ledgerMargin is kept beyond the acceptance window (entries are a few
	// hundred bytes; an hour is cheap).
	ledgerMargin = time.Hour
	// adoptAfter: an entry this old without a fold note may be adopted.
	adoptAfter = 2 * time.Minute
	// foldDeadline: the owner folds its own entry only this soon after the
	// spend; later entries are left to adoption, so the owner and an
	// adopter never both fold one entry.
	foldDeadline = adoptAfter / 4
)

// ledgerHorizon is how long after a token's expiry its entry is kept.
const ledgerHorizon = 2*MaxLeeway + spendWindow + ledgerMargin

// ledgerKeepUntil is when an entry of a token expiring at tokenExpiry may
// be collected.
func ledgerKeepUntil(tokenExpiry time.Time) time.Time { return tokenExpiry.Add(ledgerHorizon) }

// ledgerCollectible is the sweeper's rule: the entry of a token that
// expires at tokenExpiry may be deleted at now (the sweeper's clock). See
// the argument above: every acceptance window ends, on any clock within
// MaxLeeway, before expiry + 2*MaxLeeway + spendWindow.
func ledgerCollectible(tokenExpiry, now time.Time) bool {
	return now.After(ledgerKeepUntil(tokenExpiry))
}

// ledgerEntryCollectible applies ledgerCollectible to a stored entry's
// bytes. Entries of the former format (8 bytes: the expiry in Unix
// nanoseconds) use the same rule. Unreadable entries are kept.
func ledgerEntryCollectible(b []byte, now time.Time) bool {
	if len(b) == 8 {
		return ledgerCollectible(unstamp(b), now)
	}
	exp, err := audit.LedgerExpiry(b)
	return err == nil && ledgerCollectible(exp, now)
}

// foldItem is one entry for the folder: a release record to append, or a
// void token to note.
type foldItem struct {
	tok     string
	rec     audit.Record
	void    bool
	spentAt time.Time     // monotonic
	synced  chan struct{} // if set: closed once every earlier item is folded
}

// folder appends release records and writes fold notes in the background.
type folder struct {
	v      *Vault
	ch     chan foldItem
	done   chan struct{}
	ctx    context.Context // its writes; cancelled when Close gives up on it
	cancel context.CancelFunc

	mu     sync.RWMutex // guards closed and sends on ch
	closed bool
}

const foldQueue = 4096

func (v *Vault) startFolder() {
	v.fold = &folder{v: v, ch: make(chan foldItem, foldQueue), done: make(chan struct{})}
	v.fold.ctx, v.fold.cancel = context.WithCancel(context.Background())
	go v.fold.run()
}

// enqueue hands an item to the folder. It never blocks the client for
// long: when the queue is full the item is left to adoption (its entry is
// durable; a void token then relies on its refusal record).
func (f *folder) enqueue(it foldItem) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		f.v.unfolded.add(it, true) // a Redeem racing Close: left to adoption
		return
	}
	select {
	case f.ch <- it:
	default:
		f.v.unfolded.add(it, true) // the queue is full: left to adoption
	}
}

// close waits for the queued items to be folded, while ctx lasts; then it
// stops the folder's writes (what is left is adopted later).
func (f *folder) close(ctx context.Context) {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
	f.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		if f.cancel != nil {
			f.cancel()
		}
	}
}

// foldGather is how long the folder gathers releases before folding them
// together: the records are durable in their spend entries already, so
// folding them in one audit batch and one fold note, rather than one each,
// keeps background writes off a busy store.
const foldGather = 200 * time.Millisecond

func (f *folder) run() {
	defer close(f.done)
	for it := range f.ch {
		batch := []foldItem{it}
		timer := time.NewTimer(foldGather)
	gather:
		for len(batch) < 512 && it.synced == nil {
			select {
			case it2, ok := <-f.ch:
				if !ok {
					break gather
				}
				batch = append(batch, it2)
				if it2.synced != nil {
					break gather
				}
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		f.foldBatch(batch)
	}
}

// sync waits until the folder has handled every item enqueued before it
// (tests, Sweep, SyncAudit); false if ctx ended first. An item it could
// not fold is counted in Vault.unfolded.
func (f *folder) sync(ctx context.Context) bool {
	c := make(chan struct{})
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		return true
	}
	select {
	case f.ch <- foldItem{synced: c}:
	case <-ctx.Done():
		f.mu.RUnlock()
		return false
	}
	f.mu.RUnlock()
	select {
	case <-c:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *folder) foldBatch(batch []foldItem) {
	var synced []chan struct{}
	defer func() {
		for _, c := range synced {
			close(c)
		}
	}()
	var wg sync.WaitGroup
	for _, it := range batch {
		if it.synced != nil {
			synced = append(synced, it.synced)
			continue
		}
		if it.void {
			continue // its spend-unconfirmed refusal is in the log already
		}
		left := foldDeadline - time.Since(it.spentAt)
		if left <= 0 {
			f.v.unfolded.add(it, true)
			continue // adoption's now
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(f.ctx, left)
			defer cancel()
			// On failure the entry is adopted later (adoptLedger).
			if _, err := f.v.appendObserved(ctx, it.rec); err != nil {
				// A timed-out append may still land: then the record is
				// in a log after all, and adoption must wait and see.
				f.v.unfolded.add(it, !errors.Is(err, context.DeadlineExceeded))
			}
		})
	}
	wg.Wait()
}

// adoptLedger folds the release record of every spend entry whose record
// is in no log (its owner crashed between spend and fold, or its fold
// failed). Exactly once, whatever the clocks say: an entry is adopted only
// after this instance has seen it without a record for adoptAfter on its
// own monotonic clock (its owner gives up folding foldDeadline after the
// spend), only if the logs, read just before, still hold no record of it
// (logview.go), and only by the instance that wins a create-only claim on
// it. Open runs it in the background; Sweep must run it before collecting
// ledger entries and must not collect any when it fails.
func (v *Vault) adoptLedger(ctx context.Context) error {
	if err := v.checkClock(ctx, "adopt ledger"); err != nil {
		return err
	}
	if err := v.view.sync(ctx); err != nil {
		return fmt.Errorf("vault: adopt ledger: reading the logs: %w", err)
	}
	sys, _ := v.keyset()
	now := time.Now() // monotonic: how long this instance has seen an entry stray
	var stray []audit.LedgerEntry
	seen := map[[16]byte]bool{}
	for k, err := range v.st.List(ctx, audit.LedgerPrefix) {
		if err != nil {
			return fmt.Errorf("vault: adopt ledger: %w", err)
		}
		tok, ok := parseTokenHex(strings.TrimPrefix(k, audit.LedgerPrefix))
		if !ok || v.view.logged(tok) {
			continue
		}
		seen[tok] = true
		// Another instance may still be folding it, for foldDeadline after
		// its spend: wait until this instance has seen it stray for
		// adoptAfter. Its own failed folds it adopts at once.
		if now.Sub(v.strays.firstSeen(tok, now)) < adoptAfter && !v.unfolded.mine(tokenHex(tok)) {
			continue
		}
		b, err := getSmall(ctx, v.st, k, 8<<10)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("vault: adopt ledger: %w", err)
		}
		if len(b) == 8 {
			continue // former format: no record to fold
		}
		e, err := audit.OpenLedgerEntry(b, sys.auditVerifier)
		if err != nil || e.TokenID != tokenHex(tok) {
			continue // not ours to fold: audit.CheckLedger reports it
		}
		stray = append(stray, e)
	}
	v.strays.keep(seen)
	if len(stray) == 0 {
		if len(seen) == 0 {
			v.unfolded.clear() // every entry is in a log
		}
		return nil
	}
	// The logs were read again just now; a record older than what this
	// instance read at Open is looked for in the logs themselves (rare:
	// after an outage longer than the view's horizon).
	if err := v.view.sync(ctx); err != nil {
		return fmt.Errorf("vault: adopt ledger: reading the logs: %w", err)
	}
	var old map[string]bool
	for _, e := range stray {
		if e.Record.Time.Before(v.view.from) && old == nil {
			old = map[string]bool{}
			for r, err := range audit.Scan(ctx, v.st, audit.Filter{Event: audit.EventRedeem, Until: v.view.from.Add(time.Hour)}) {
				if err != nil {
					return fmt.Errorf("vault: adopt ledger: %w", err)
				}
				if r.Outcome == audit.OutcomeOK || r.Reason == reasonSpendUnconfirmed {
					old[r.TokenID] = true
				}
			}
		}
	}
	for _, e := range stray {
		tok, _ := parseTokenHex(e.TokenID)
		if v.view.logged(tok) || old[e.TokenID] {
			continue
		}
		// One adopter per entry, across instances: a create-only claim.
		// (An adopter that dies between claim and fold leaves the entry
		// in no log; audit.CheckLedger reports it.)
		claim := []byte(v.log.LogID() + "\n")
		err := v.st.Put(ctx, adoptClaimPrefix+e.TokenID, bytes.NewReader(claim), int64(len(claim)), store.PutOptions{IfAbsent: true})
		if errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("vault: adopt ledger: %w", err)
		}
		if _, err := v.appendObserved(ctx, e.Record); err != nil {
			return fmt.Errorf("vault: adopt ledger: %w: %w", ErrAuditUnavailable, err)
		}
		v.view.noteSpent(tok, ledgerKeepUntil(e.Expires), true)
		v.unfolded.done(e.TokenID)
	}
	// Every entry this pass saw without a record is in a log now: no
	// release of this Vault's is missing from the logs any more.
	if v.view.allLogged(seen) {
		v.unfolded.clear()
	}
	return nil
}

// strayEntries remembers, on the monotonic clock, when this instance first
// saw each spend entry without a record in the logs.
type strayEntries struct {
	mu    sync.Mutex
	first map[[16]byte]time.Time
}

func (s *strayEntries) firstSeen(tok [16]byte, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = map[[16]byte]time.Time{}
	}
	t, ok := s.first[tok]
	if !ok {
		s.first[tok], t = now, now
	}
	return t
}

// keep forgets every entry not in seen (folded, or collected, since).
func (s *strayEntries) keep(seen map[[16]byte]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.first {
		if !seen[k] {
			delete(s.first, k)
		}
	}
}

// adoptClaimPrefix holds the create-only claims of adopters
// (ledger-adopt/<token-id>); Sweep's collectLedger removes each with its
// entry.
const adoptClaimPrefix = "ledger-adopt/"

// foldNoteLifetime: earlier versions wrote fold notes (ledger-folded/…);
// Sweep removes those older than this (every entry they can name is
// collectible by then).
const foldNoteLifetime = MaxGrantTTLLimit + ledgerHorizon + adoptAfter

func foldNoteTime(key string) (time.Time, bool) {
	name := strings.TrimPrefix(key, audit.FoldedPrefix)
	ns, _, ok := strings.Cut(name, "-")
	if !ok || len(ns) != 20 {
		return time.Time{}, false
	}
	var n int64
	for _, c := range ns {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(0, n), true
}

// tokenHex is the hex of a token ID.
func tokenHex(id [16]byte) string { return hex.EncodeToString(id[:]) }

// collectLedger is the ledger part of Sweep: it adopts un-folded entries
// (adoptLedger) and, only if that succeeded, deletes the entries that
// ledgerEntryCollectible allows at the vault's clock. retention.go's
// sweepLedger is this call.
func (v *Vault) collectLedger(ctx context.Context) (removed int, err error) {
	v.fold.sync(ctx) // this instance's own releases into its log first
	if err := v.adoptLedger(ctx); err != nil {
		return 0, err
	}
	now := v.now()
	for k, err := range v.st.List(ctx, audit.LedgerPrefix) {
		if err != nil {
			return removed, fmt.Errorf("vault: sweep ledger: %w", err)
		}
		b, err := getSmall(ctx, v.st, k, 8<<10)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("vault: sweep ledger: %w", err)
		}
		tok, _ := parseTokenHex(strings.TrimPrefix(k, audit.LedgerPrefix))
		if ledgerEntryCollectible(b, now) && (len(b) == 8 || v.view.logged(tok)) {
			if err := v.st.Delete(ctx, k); err != nil {
				return removed, fmt.Errorf("vault: sweep ledger: %w", err)
			}
			if err := v.st.Delete(ctx, adoptClaimPrefix+strings.TrimPrefix(k, audit.LedgerPrefix)); err != nil {
				return removed, fmt.Errorf("vault: sweep ledger: %w", err)
			}
			removed++
		}
	}
	for k, err := range v.st.List(ctx, audit.FoldedPrefix) {
		if err != nil {
			return removed, fmt.Errorf("vault: sweep ledger: %w", err)
		}
		if t, ok := foldNoteTime(k); ok && now.Sub(t) > foldNoteLifetime {
			if err := v.st.Delete(ctx, k); err != nil {
				return removed, fmt.Errorf("vault: sweep ledger: %w", err)
			}
		}
	}
	return removed, nil
}

// SyncAudit waits until every redemption this Vault released so far has
// its release record in the audit log, and returns nil only then. Release
// records are durable (in their spend entries) before any byte leaves, and
// are folded into the log in the background within about 200 ms; a reader
// that must see this instance's latest releases in audit.Scan (a
// dashboard, a test) calls SyncAudit first. It also waits for the records
// of failed calls still being written (a refusal that came at its call's
// deadline has AuditMargin more, see DeadlineMargin).
//
// It returns an error wrapping ErrAuditUnavailable when a release is not
// in the log: ctx ended first, or the fold failed (the audit log did not
// take the record, or the folder's queue was full). Such a record is
// adopted into a log by the next Open or Sweep (of any instance) once it
// is 2 minutes old; SyncAudit returns nil again after this Vault's own
// Sweep (or adoption at Open) has covered every release it could not
// fold (see syncaudit.go).
func (a Admin) SyncAudit(ctx context.Context) error {
	v := a.v
	if v.isClosed() {
		return ErrClosed
	}
	if !v.fold.sync(ctx) {
		return fmt.Errorf("vault: sync audit: releases still being folded: %w: %w", ErrAuditUnavailable, context.Cause(ctx))
	}
	if !v.records.Wait(ctx) {
		return fmt.Errorf("vault: sync audit: records still being written: %w: %w", ErrAuditUnavailable, context.Cause(ctx))
	}
	return v.unfolded.check()
}
