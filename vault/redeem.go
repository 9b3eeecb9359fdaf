package vault

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

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

func ledgerKey(tokenID [16]byte) string { return "redeemed/" + hex.EncodeToString(tokenID[:]) }

// Redeem spends token and returns the document's plaintext as a stream.
//
// It checks, in order: the token's seal (ErrTokenInvalid), its expiry with
// Config.ClockLeeway (ErrTokenExpired), that req is the grantee
// (ErrWrongPrincipal), the principal's quota (ErrQuotaExceeded), that the
// document is present and not expired (ErrNotFound, ErrExpired); it spends
// the token by creating redeemed/<token-id> create-only in the Store, so a
// second redemption anywhere in the cluster fails (ErrTokenReplayed); then
// it makes the audit record durable (ErrAuditUnavailable otherwise) and
// only then returns the reader. Every refusal is audited with its precise
// reason. (The document lookup, the spend and the audit write run
// concurrently; all are done before the reader is returned. A token
// presented for a deleted document is spent too, and a replay's audit trail
// is an "ok" record followed by the refusal that says it was not served.)
//
// The reader authenticates the payload segment by segment: if storage was
// tampered with, a Read fails with ErrTampered. The caller must Close it.
func (v *Vault) Redeem(ctx context.Context, tok string, req Requester) (io.ReadCloser, Info, error) {
	if v.isClosed() {
		return nil, Info{}, ErrClosed
	}
	rec := audit.Record{Event: audit.EventRedeem, Principal: clip(req.Principal, 256), RemoteAddr: clip(req.RemoteAddr, 128)}
	rc, info, err := v.redeem(ctx, tok, req, &rec)
	if err != nil {
		if isProbe(err) {
			v.noteRefusal(ctx, req.Principal, req.RemoteAddr, rec.TokenID)
		}
		if !errors.Is(err, ErrAuditUnavailable) {
			rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
			if aerr := v.audit(ctx, rec); aerr != nil {
				return nil, Info{}, fmt.Errorf("%w (and %w)", err, aerr)
			}
		}
		return nil, Info{}, err
	}
	return rc, info, nil
}

func (v *Vault) redeem(ctx context.Context, tok string, req Requester, rec *audit.Record) (io.ReadCloser, Info, error) {
	c, err := v.openToken(ctx, tok)
	if err != nil {
		return nil, Info{}, err
	}
	rec.TokenID = hex.EncodeToString(c.ID[:])
	rec.Object = objectID(c.ObjectID).String()
	rec.Purpose = c.Purpose
	now := v.now()
	leeway := v.cfg.ClockLeeway
	if now.After(c.ExpiresAt.Add(leeway)) {
		return nil, Info{}, fmt.Errorf("vault: redeem: %w", ErrTokenExpired)
	}
	// A token "issued in the future" means this clock went back (or is
	// skewed past the leeway); refusing it keeps an expired token from
	// becoming valid again when a clock jumps back.
	if now.Before(c.IssuedAt.Add(-leeway)) {
		return nil, Info{}, fmt.Errorf("vault: redeem: token not yet valid: %w", ErrTokenExpired)
	}
	if req.Principal != c.Principal {
		return nil, Info{}, fmt.Errorf("vault: redeem: %w", ErrWrongPrincipal)
	}
	id := objectID(c.ObjectID)
	if err := v.checkRedeemQuota(ctx, req.Principal, req.RemoteAddr, c.ID); err != nil {
		return nil, Info{}, err
	}

	// Three round trips run at once: the key record, the payload, and
	// spending the token. None releases anything (plaintext leaves only
	// after the audit record below is durable), and spending a token whose
	// document turns out to be gone costs nothing. A refusal reports the
	// document's state before a replay, as if the steps ran in order.
	type blobResult struct {
		rc  io.ReadCloser
		err error
	}
	bctx, cancelBlob := context.WithCancel(ctx)
	blobc := make(chan blobResult, 1)
	go func() {
		rc, err := v.st.Get(bctx, blobKey(id))
		if err == nil {
			rc = newReadAhead(rc)
		}
		blobc <- blobResult{rc, err}
	}()
	spentc := make(chan error, 1)
	go func() { spentc <- v.spend(ctx, c) }()
	fail := func(err error) (io.ReadCloser, Info, error) {
		cancelBlob()
		if b := <-blobc; b.rc != nil {
			b.rc.Close()
		}
		return nil, Info{}, err
	}
	md, key, err := v.loadRecord(ctx, id)
	if err != nil {
		<-spentc
		return fail(err)
	}
	rec.Subject = hex.EncodeToString(md.SubjectMAC)
	if v.expired(md) {
		<-spentc
		key.Destroy()
		return fail(fmt.Errorf("vault: redeem: %w", ErrExpired))
	}
	if md.Canary {
		v.touchCanary(ctx, audit.EventRedeem, req.Principal, req.RemoteAddr, id)
	}
	// The audit record is written while the spend is still in flight; both
	// must be durable before anything is released. If the spend then
	// fails (a replay), the refusal record Redeem appends names this one
	// as not served.
	ok := *rec
	ok.Outcome = audit.OutcomeOK
	okRec, auditErr := v.auditRecord(ctx, ok)
	spendErr := <-spentc
	if auditErr != nil || spendErr != nil {
		key.Destroy()
		if auditErr == nil {
			rec.Detail = fmt.Sprintf("not served: supersedes %s seq %d", okRec.Log, okRec.Seq)
		}
		return fail(firstError(spendErr, auditErr))
	}
	b := <-blobc
	if b.err != nil {
		key.Destroy()
		cancelBlob()
		if errors.Is(b.err, store.ErrNotFound) {
			return nil, Info{}, fmt.Errorf("vault: redeem: payload: %w", ErrNotFound)
		}
		return nil, Info{}, fmt.Errorf("vault: redeem: payload: %w", b.err)
	}
	pr, err := newPlainReader(b.rc, key, md.Size)
	if err != nil {
		cancelBlob()
		return nil, Info{}, fmt.Errorf("vault: redeem: %w", err)
	}
	return &cancelOnClose{ReadCloser: pr, cancel: cancelBlob}, infoOf(md), nil
}

// openToken opens a token's seal. After a failure it reloads the vault's
// keyset at most once a second, so a token sealed by another instance under
// a freshly rotated key still opens here.
func (v *Vault) openToken(ctx context.Context, tok string) (token.Claims, error) {
	_, sealer := v.keyset()
	c, err := sealer.Open(tok)
	if err != nil && v.reloadKeys(ctx) {
		_, sealer = v.keyset()
		c, err = sealer.Open(tok)
	}
	if err != nil {
		return token.Claims{}, fmt.Errorf("vault: redeem: %w", ErrTokenInvalid)
	}
	return c, nil
}

// spend creates the single-use ledger entry. Its body is the token's
// expiry, so Sweep can collect entries that can no longer matter.
func (v *Vault) spend(ctx context.Context, c token.Claims) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(c.ExpiresAt.UnixNano()))
	err := v.st.Put(ctx, ledgerKey(c.ID), bytes.NewReader(b[:]), int64(len(b)), store.PutOptions{IfAbsent: true})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("vault: redeem: %w", ErrTokenReplayed)
	}
	if err != nil {
		return fmt.Errorf("vault: redeem: spend token: %w", err)
	}
	return nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// isProbe: refusals that say "this caller holds tokens it should not".
func isProbe(err error) bool {
	return errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired) ||
		errors.Is(err, ErrTokenReplayed) || errors.Is(err, ErrWrongPrincipal)
}
