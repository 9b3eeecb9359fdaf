package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Requester is who presents a token.
type Requester struct {
	// Principal is the authenticated identity presenting the token; it
	// must equal the grant's Access.Principal.
	Principal string
	// RemoteAddr is recorded in the audit log (optional).
	RemoteAddr string
}

func ledgerKey(tokenID [16]byte) string { return audit.LedgerPrefix + tokenHex(tokenID) }

// reasonSpendUnconfirmed is the audit reason of a redemption whose spend
// write failed or answered too late: nothing was served.
const reasonSpendUnconfirmed = audit.ReasonSpendUnconfirmed

// spendDeadline is spendWindow; tests shorten it.
var spendDeadline = spendWindow

// errSpendUnconfirmed: the spend write failed ambiguously or answered
// after the spend window; nothing was served.
var errSpendUnconfirmed = errors.New("vault: redeem: spend not confirmed in time; nothing served")

// Redeem spends token and returns the document's plaintext as a stream.
//
// It checks, in order: the token's seal (ErrTokenInvalid), its expiry with
// Config.Access.ClockLeeway (ErrTokenExpired), that req is the grantee
// (ErrWrongPrincipal), that the principal is not frozen (ErrFrozen) and
// its concurrent streams (ErrQuotaExceeded; a redemption is counted
// against Quota.Redemptions when its token is granted, not again here); then it reads the key record and the payload at once
// and checks that the document is present and not expired (ErrNotFound,
// ErrExpired) and that the first RedeemAuthBytes of plaintext authenticate
// (ErrTampered). Only then does it spend the token: one create-only write
// of redeemed/<token-id> holding the signed release record (see spend.go),
// which fails for a second redemption anywhere in the cluster
// (ErrTokenReplayed). A refusal before that point spends nothing, so a
// missing, expired or tampered document leaves the token unspent and no
// release record. The spend must answer within 10 s of the expiry check
// (ErrTokenExpired otherwise, nothing served); any other spend failure
// serves nothing either (the error wraps the store's). Every refusal is
// audited with its precise reason; a release record exists iff a reader
// was returned.
//
// The reader authenticates the rest of the payload segment by segment
// (16 KiB of ciphertext, 16,384 − 16 bytes of plaintext per segment; the
// first holds 40 bytes less): if storage was tampered with past the first
// RedeemAuthBytes, the reader releases the plaintext of every authentic
// segment before the first bad one, then fails with ErrTampered. A store
// connection that drops mid-stream fails a Read with an I/O error that is
// not ErrTampered, and a store that delivers nothing for 30 s one wrapping
// ErrStoreUnavailable. The reader reads within ctx: when ctx ends, so does
// the stream (Handler bounds only the time to the first byte). The caller
// must Close the reader.
func (v *Vault) Redeem(ctx context.Context, tok string, req Requester) (io.ReadCloser, Info, error) {
	return v.redeemStream(ctx, tok, req, false)
}

// redeemStream is Redeem; with detach, the returned stream no longer ends
// with ctx (the Handler's RequestTimeout bounds the time to the first byte;
// the client's rate bounds the rest).
func (v *Vault) redeemStream(ctx context.Context, tok string, req Requester, detach bool) (io.ReadCloser, Info, error) {
	if v.isClosed() {
		return nil, Info{}, ErrClosed
	}
	start := time.Now()
	rec := audit.Record{Event: audit.EventRedeem, Principal: clip(req.Principal, 256), RemoteAddr: clip(req.RemoteAddr, 128)}
	rc, info, deep, err := v.redeem(ctx, tok, req, &rec, detach)
	if err != nil {
		probe := isProbe(err) && !errors.Is(err, errSpendUnconfirmed)
		record := !errors.Is(err, ErrAuditUnavailable) || errors.Is(err, errSpendUnconfirmed)
		if record {
			rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
			if errors.Is(err, errSpendUnconfirmed) {
				rec.Reason = reasonSpendUnconfirmed
			}
			rec.Time = v.now().UTC()
		}
		// The detector's count and the refusal record are made even when a
		// hung KMS or store took the whole deadline (see DeadlineMargin).
		var aerr error
		if probe || record {
			aerr = v.late(ctx, func(lctx context.Context) error {
				if probe {
					nstart := time.Now()
					v.noteRefusal(lctx, req.Principal, req.RemoteAddr, rec.TokenID)
					v.lastNote.Store(int64(time.Since(nstart)))
				}
				if !record {
					return nil
				}
				astart := time.Now()
				aerr := v.audit(lctx, rec)
				v.lastAppend.Store(int64(time.Since(astart)))
				return aerr
			})
		}
		if aerr != nil && record {
			err = fmt.Errorf("%w (and %w)", err, aerr)
		}
		if deep {
			// The slowest refusal path (up to the spend, then its refusal
			// record) sets the floor every refusal waits for.
			v.lat.observe(time.Since(start))
		}
		return nil, Info{}, err
	}
	// A served request did the same work as a replay but for the refusal
	// record and the refusal's count (a redemption writes no count of its
	// own: Quota.Redemptions is counted at grant): count both in, so the
	// floor is right before any replay, and covers the refusals that are
	// counted without going as far (someone else's token).
	v.lat.observe(time.Since(start) + time.Duration(v.lastAppend.Load()) + time.Duration(v.lastNote.Load()))
	return rc, info, nil
}

// redeem does the work of Redeem; deep reports that the request went as
// far as the spend (the costliest path, served or refused).
func (v *Vault) redeem(ctx context.Context, tok string, req Requester, rec *audit.Record, detach bool) (io.ReadCloser, Info, bool, error) {
	c, err := v.openToken(ctx, tok)
	if err != nil {
		return nil, Info{}, false, err
	}
	rec.TokenID = tokenHex(c.ID)
	rec.Object = objectID(c.ObjectID).String()
	rec.Purpose = c.Purpose
	// The spend window starts at the claims check (monotonic clock).
	accepted := time.Now()
	if err := v.checkClaims(c, req.Principal); err != nil {
		return nil, Info{}, false, err
	}
	id := objectID(c.ObjectID)
	// The quota check (the freeze; see checkRedeemQuota) runs while a stream
	// slot is taken and the key record and the payload are read: its
	// answer is awaited before the key record is opened (no KEK call for
	// a refused request) and before anything is spent. A refusal cancels
	// the reads. The reads start only once the principal has a stream
	// slot, so a principal's concurrent reads stay bounded.
	var quotaErr error
	quotaDone := make(chan struct{})
	actx, cancelAcquire := context.WithCancel(ctx)
	defer cancelAcquire()
	go func() {
		defer close(quotaDone)
		if quotaErr = v.checkRedeemQuota(ctx, req.Principal); quotaErr != nil {
			cancelAcquire()
		}
	}()
	releaseStream, err := v.streams.acquire(actx, req.Principal, v.cfg.Access.MaxStreamsPerPrincipal)
	if err != nil {
		<-quotaDone
		if quotaErr != nil {
			return nil, Info{}, false, quotaErr
		}
		return nil, Info{}, false, err
	}
	served := false
	defer func() {
		if !served {
			releaseStream()
		}
	}()

	// The key record and the payload are read at once; nothing is spent
	// until the document is known present, unexpired and authentic.
	type rawRecord struct {
		b   []byte
		err error
	}
	type blobResult struct {
		rc  io.ReadCloser
		err error
	}
	parent := ctx
	if detach {
		// Bound by ctx until Redeem returns the reader, then by the
		// reader's Close only.
		parent = context.WithoutCancel(ctx)
	}
	bctx, cancelBlob := context.WithCancel(parent)
	if detach {
		stop := context.AfterFunc(ctx, cancelBlob)
		defer stop()
	}
	blobc := make(chan blobResult, 1)
	go func() {
		rc, err := v.st.Get(bctx, blobKey(id))
		if err == nil {
			rc = newReadAhead(rc)
		}
		blobc <- blobResult{rc, err}
	}()
	recc := make(chan rawRecord, 1)
	go func() {
		b, err := getSmall(bctx, v.keys, keyRecordKey(id), maxKeyRecord)
		recc <- rawRecord{b, err}
	}()
	fail := func(err error) (io.ReadCloser, Info, bool, error) {
		cancelBlob()
		if b := <-blobc; b.rc != nil {
			b.rc.Close()
		}
		return nil, Info{}, false, err
	}
	<-quotaDone
	if quotaErr != nil {
		cancelBlob()
		<-recc
		return fail(quotaErr)
	}
	raw := <-recc
	md, key, err := v.loadFetchedRecord(ctx, id, raw.b, raw.err)
	if err != nil {
		return fail(err)
	}
	rec.Subject = hex.EncodeToString(md.SubjectMAC)
	if v.expired(md) {
		key.Destroy()
		return fail(fmt.Errorf("vault: redeem: %w", ErrExpired))
	}
	if !allowedTypes[md.ContentType] {
		// Put accepts nothing else; a record saying otherwise is refused
		// before the spend, so nothing is recorded as released.
		key.Destroy()
		return fail(fmt.Errorf("vault: redeem: %w", ErrUnsupportedContent))
	}
	if md.Canary {
		v.touchCanary(ctx, audit.EventRedeem, req.Principal, req.RemoteAddr, id)
	}
	// A freeze raised while this request was on its way (another
	// instance's alert, the canary just touched) is honoured before
	// anything is spent or released. The check (a read of the state chain
	// when this instance's view is older than chainFresh) runs while the
	// payload's head arrives, not after it; its answer is awaited before
	// the spend.
	frozenc := make(chan error, 1)
	go func() { frozenc <- v.checkFrozenBeforeRelease(ctx, req.Principal) }()
	b := <-blobc
	if b.err != nil {
		key.Destroy()
		cancelBlob()
		if errors.Is(b.err, store.ErrNotFound) {
			return nil, Info{}, false, fmt.Errorf("vault: redeem: payload: %w", ErrNotFound)
		}
		return nil, Info{}, false, fmt.Errorf("vault: redeem: payload: %w", b.err)
	}
	pr, err := newPlainReader(b.rc, key, md.Size)
	if err != nil {
		cancelBlob()
		return nil, Info{}, false, fmt.Errorf("vault: redeem: %w", err)
	}
	head, err := pr.readHead(RedeemAuthBytes)
	if err != nil {
		pr.Close()
		cancelBlob()
		return nil, Info{}, false, fmt.Errorf("vault: redeem: %w", err)
	}

	if err := <-frozenc; err != nil {
		pr.Close()
		cancelBlob()
		return nil, Info{}, false, err
	}

	// Nothing irreversible on a clock that disagrees with the store's.
	if err := v.checkClock(ctx, "redeem"); err != nil {
		pr.Close()
		cancelBlob()
		return nil, Info{}, true, err
	}

	// Spend: one create-only write that carries the release record.
	ok := *rec
	ok.Log, ok.Seq = audit.LedgerLog, 0
	ok.Outcome = audit.OutcomeOK
	ok.Time = v.now().UTC()
	ok.Detail = audit.LedgerKeepUntilPrefix + ledgerKeepUntil(c.ExpiresAt).UTC().Format(time.RFC3339)
	entry, err := v.ledgerSigner.Sign(audit.LedgerEntry{TokenID: rec.TokenID, Expires: c.ExpiresAt, Record: ok})
	if err != nil {
		pr.Close()
		cancelBlob()
		return nil, Info{}, false, fmt.Errorf("vault: redeem: ledger entry: %w", err)
	}
	sctx, cancelSpend := context.WithDeadline(ctx, accepted.Add(spendDeadline))
	err = v.st.Put(sctx, ledgerKey(c.ID), bytes.NewReader(entry), int64(len(entry)), store.PutOptions{IfAbsent: true})
	cancelSpend()
	late := time.Since(accepted) > spendDeadline
	if err != nil || late {
		pr.Close()
		cancelBlob()
		switch {
		case errors.Is(err, store.ErrExists):
			return nil, Info{}, true, fmt.Errorf("vault: redeem: %w", ErrTokenReplayed)
		case late:
			v.fold.enqueue(foldItem{tok: rec.TokenID, void: true})
			return nil, Info{}, true, fmt.Errorf("%w: %w", errSpendUnconfirmed, ErrTokenExpired)
		default:
			v.fold.enqueue(foldItem{tok: rec.TokenID, void: true})
			return nil, Info{}, true, fmt.Errorf("%w: %w", errSpendUnconfirmed, err)
		}
	}
	// The spend entry was created: but a token the logs say was spent
	// (its earlier entry deleted, or the ledger restored from a backup)
	// stays spent (logview.go). Checked here, after the create-only write,
	// so that an ordinary replay is refused by that write, at the same
	// cost as before, and the logs are consulted only on the path that
	// would release.
	if spent, err := v.view.isSpent(ctx, c.ID); err != nil || spent {
		pr.Close()
		cancelBlob()
		if err != nil {
			// In doubt: the entry just written keeps the token spent;
			// nothing is released.
			v.fold.enqueue(foldItem{tok: rec.TokenID, void: true})
			return nil, Info{}, true, fmt.Errorf("vault: redeem: %w", err)
		}
		return nil, Info{}, true, fmt.Errorf("vault: redeem: spend entry had been removed: %w", ErrTokenReplayed)
	}
	served = true
	v.view.noteSpent(c.ID, ledgerKeepUntil(c.ExpiresAt), false)
	v.view.noteView(req.Principal, id, ok.Time)
	v.fold.enqueue(foldItem{tok: rec.TokenID, rec: ok, spentAt: time.Now()})
	return v.countReleased(&redeemReader{head: head, pr: pr, cancel: cancelBlob, release: releaseStream}), infoOf(md), true, nil
}

// redeemReader releases the authenticated head, then the rest of the
// payload as it authenticates.
type redeemReader struct {
	head    []byte
	pr      *plainReader
	cancel  context.CancelFunc
	release func()
	closed  bool
}

func (r *redeemReader) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		if len(r.head) == 0 {
			r.head = nil // 16 KiB a slow reader need not keep
		}
		return n, nil
	}
	return r.pr.Read(p)
}

func (r *redeemReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.pr.Close()
	r.cancel()
	r.release()
	return err
}

// openToken opens a token's seal. A token sealed under a key this instance
// does not know (another instance may just have rotated it in) makes it
// reload the keyset first, so rotation never refuses a legitimate token;
// see reloadKeysFor.
func (v *Vault) openToken(ctx context.Context, tok string) (token.Claims, error) {
	v.refreshKeys(ctx)
	_, sealer := v.keyset()
	c, err := sealer.Open(tok)
	if err != nil && !sealer.KnowsKey(tok) && v.reloadKeysFor(ctx, time.Now()) {
		_, sealer = v.keyset()
		c, err = sealer.Open(tok)
	}
	if err != nil {
		return token.Claims{}, fmt.Errorf("vault: redeem: %w", ErrTokenInvalid)
	}
	return c, nil
}

// checkClaims refuses a token whose claims alone decide: expired, issued
// in the future (this clock went back, or is skewed past the leeway), or
// granted to someone else. No I/O.
func (v *Vault) checkClaims(c token.Claims, principal string) error {
	now := v.now()
	leeway := v.cfg.Access.ClockLeeway
	if now.After(c.ExpiresAt.Add(leeway)) {
		return fmt.Errorf("vault: redeem: %w", ErrTokenExpired)
	}
	// A token "issued in the future" means this clock went back; refusing
	// it keeps an expired token from becoming valid again when a clock
	// jumps back.
	if now.Before(c.IssuedAt.Add(-leeway)) {
		return fmt.Errorf("vault: redeem: token not yet valid: %w", ErrTokenExpired)
	}
	if principal != c.Principal {
		return fmt.Errorf("vault: redeem: %w", ErrWrongPrincipal)
	}
	// Every instance remembers spent tokens for as long as a token of
	// MaxGrantTTL can be accepted (logview.go); a token meant to live
	// longer (an instance configured otherwise) is refused.
	if c.ExpiresAt.Sub(c.IssuedAt) > v.cfg.Access.MaxGrantTTL {
		return fmt.Errorf("vault: redeem: token lives longer than MaxGrantTTL: %w", ErrTokenExpired)
	}
	return nil
}

// refusedBeforeIO reports whether Redeem would refuse tok for principal
// before any I/O: a seal that does not open under the keys loaded now
// (forged, garbled, or a key not loaded yet), or claims that decide alone.
// No I/O, no reload, no record.
func (v *Vault) refusedBeforeIO(tok, principal string) bool {
	_, sealer := v.keyset()
	c, err := sealer.Open(tok)
	return err != nil || v.checkClaims(c, principal) != nil
}

// isProbe: refusals that say "this caller holds tokens it should not".
func isProbe(err error) bool {
	return errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired) ||
		errors.Is(err, ErrTokenReplayed) || errors.Is(err, ErrWrongPrincipal)
}
