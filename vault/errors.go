package vault

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. Errors returned by the vault wrap
// one of these with context, so a message reads as one sentence with one
// "vault:" prefix ("vault: redeem: token already used"); none of them ever carries a token, a key, image
// bytes or a raw subject ID.
var (
	// ErrNotFound: no such object (never stored, deleted, or shredded).
	ErrNotFound = errors.New("document not found")
	// ErrExpired: the document is past its expiry. It is refused
	// whether or not Sweep has deleted it yet.
	ErrExpired = errors.New("document past its expiry")
	// ErrTampered: a key record or payload failed authentication: edited,
	// swapped between objects, truncated, or corrupt.
	ErrTampered = errors.New("document tampered or corrupt")
	// ErrTokenInvalid: the token did not open: garbled, truncated, forged,
	// from another vault, or not a token at all.
	ErrTokenInvalid = errors.New("token invalid")
	// ErrTokenExpired: the token opened but is past its expiry (plus leeway).
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenReplayed: the token was already redeemed (anywhere in the cluster).
	ErrTokenReplayed = errors.New("token already used")
	// ErrWrongPrincipal: the requester is not the principal the token was granted to.
	ErrWrongPrincipal = errors.New("token was granted to another principal")
	// ErrQuotaExceeded: the principal is over a grant or redemption quota.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrAuditUnavailable: the audit record could not be made durable, so
	// nothing was served or changed (fail closed). From SyncAudit: releases
	// of this Vault are not yet in the audit log (they are durable in their
	// spend entries, and adopted into a log later).
	ErrAuditUnavailable = errors.New("audit log unavailable")
	// ErrStoreUnavailable: the store failed or did not answer in time
	// (connection refused or reset, a server error, a server that stopped
	// answering until the call's deadline). Nothing is known of the object
	// concerned and nothing was destroyed because of it; retry later. The
	// store's own error is wrapped too (context.DeadlineExceeded when the
	// deadline passed first). The vault's errors name the store this way
	// because no other sentinel says it: ErrAuditUnavailable is the audit
	// log (which a store outage also makes unavailable, and then both
	// match), ErrKEKUnavailable the KMS.
	ErrStoreUnavailable = errors.New("store unavailable")
	// ErrUnsupportedContent: the body is not one of the accepted image or
	// document formats (JPEG, PNG, WebP, HEIC/HEIF, PDF), or does not match
	// its declared content type.
	ErrUnsupportedContent = errors.New("unsupported content type")
	// ErrTooLarge: the body is longer than Config.Storage.MaxSize or than its
	// declared size.
	ErrTooLarge = errors.New("document too large")
	// ErrTruncated: the body ended before its declared size.
	ErrTruncated = errors.New("document shorter than its declared size")
	// ErrInvalidArgument: a required argument is missing or out of range
	// (empty subject or purpose, retention over the maximum, malformed ID).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrWrongKEK: the vault's keyset was wrapped by another key-encryption
	// key, or the KEK could not open it.
	ErrWrongKEK = errors.New("wrong key-encryption key for this vault")
	// ErrKEKUnavailable: the key-encryption key could not be reached (KMS
	// outage, throttling, timeout, disabled key). Nothing was decided about
	// the object: it is not tampered, and nothing is destroyed on it.
	ErrKEKUnavailable = errors.New("key-encryption key unavailable")
	// ErrHeld: the document is under legal hold; Delete and EraseSubject
	// keep it until Release.
	ErrHeld = errors.New("document under legal hold")
	// ErrClosed: the Vault was closed.
	ErrClosed = errors.New("vault closed")
	// ErrClockSkew: this instance's clock disagrees with the store's by more than
	// Config.Access.ClockLeeway, so it did nothing irreversible (no spend, shred,
	// ledger collection or new deadline). It resumes once the clocks agree.
	ErrClockSkew = errors.New("clock disagrees with the store's time; nothing irreversible done")
	// ErrConflict: an object changed under an administrative run (Rewrap)
	// between its read and its write; nothing was overwritten, run it again.
	ErrConflict = errors.New("vault: concurrent change; retry")
	// ErrStoreFull: the store has no space left (a full disk or an exhausted
	// quota: ENOSPC, EDQUOT). Nothing half-written stays readable. It also
	// matches ErrStoreUnavailable.
	ErrStoreFull = fmt.Errorf("store full: %w", ErrStoreUnavailable)
	// ErrFrozen: the principal was frozen after an alert (the default; see
	// Config.Detection.AlertOnly) and is refused until Unfreeze. It also matches
	// ErrQuotaExceeded.
	ErrFrozen = fmt.Errorf("principal frozen after an alert: %w", ErrQuotaExceeded)
	// ErrNotViewed: Decide refused a decision about a document the principal
	// was not handed (a redeemed token for it) within DecideWindow, and that
	// Config.Access.DecideWithoutView does not let it decide unseen. Nothing was
	// decided; the refusal is audited (reason "not-viewed") and counted like a
	// refused token.
	ErrNotViewed = errors.New("decision about a document the principal has not viewed")
)

// ExpiryTagError: Hold or Release recorded the new hold state (audit
// record, hold marker and key record are written, so the vault itself
// already acts on it) but could not change the payload's expiry mark in the
// store (store.ExpiryTagger; on S3 the tag that the lifecycle backstop of
// s3store.SetExpiryRule requires).
//
// After a failed Hold (Held true) the store's own expiry may still delete
// the payload on its schedule: the hold is not safe until a repeated Hold
// returns nil. After a failed Release (Held false) the document is released
// and Sweep deletes it on schedule as usual; only the store-side backstop no
// longer applies to it until a repeated Release returns nil.
//
// Err is the store's error; errors.Is and errors.As see through it.
type ExpiryTagError struct {
	Object string // the document's ID
	Held   bool   // the state that was recorded: true for Hold, false for Release
	Err    error
}

func (e *ExpiryTagError) Error() string {
	if e.Held {
		return fmt.Sprintf("vault: hold %s: hold recorded, but the store may still expire the payload (repeat Hold): %v", e.Object, e.Err)
	}
	return fmt.Sprintf("vault: release %s: release recorded, but the store's expiry backstop no longer applies to the payload (repeat Release): %v", e.Object, e.Err)
}

func (e *ExpiryTagError) Unwrap() error { return e.Err }
