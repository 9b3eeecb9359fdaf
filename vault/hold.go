package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Legal hold.
//
// A hold suspends a document's deadline: Sweep keeps it, Delete and
// EraseSubject refuse it, Grant and Redeem serve it past its deadline. Its
// state is written in two places that must agree:
//
//   - the state chain (statechain.go): one signed, hash-linked entry per
//     Hold or Release that changes the state, shared by every instance and
//     never forgotten by one that read it;
//   - the key record's LegalHold flag, inside the encrypted, authenticated
//     record.
//
// Every decision that depends on the hold (Sweep, Delete, EraseSubject, and
// Grant/Redeem of a held document or one past its deadline) reads both
// (resolveHold):
//
//   - the chain never named the document: the record's flag must say "not
//     held" (a record saying "held" with no entry was not written by Hold);
//   - the chain's latest entry and the flag agree: that state;
//   - they disagree, or the chain is broken: errHoldInDoubt. The document
//     is neither shredded nor served past its deadline, Sweep counts it as
//     Unknown and raises AlertTampered. A Hold or Release interrupted
//     between its chain entry and its record ends in this state too;
//     repeating the call settles it.
//
// So putting back an older key record (from before a Hold, or a held one
// from before a Release) changes nothing but raising the alarm, and so
// does deleting a hold marker of any kind: the chain entry is the state,
// and the chain cannot be cut without being noticed (statechain.go).
//
// The store's own expiry (store.ExpiryTagger: on S3 the lifecycle backstop,
// which matches payloads tagged idvault-expire=yes) knows nothing of the
// chain, so Hold and Release also switch the payload's tag, last
// (setExpirable). A Hold whose tag update fails returns ExpiryTagError;
// repeating it settles the tag.

// errHoldInDoubt: the state chain and the key record disagree about a
// document's hold (a rollback from a backup, a forged record, or an
// interrupted Hold/Release), or the chain cannot be trusted.
var errHoldInDoubt = fmt.Errorf("vault: legal hold state in doubt (the state chain and the key record disagree): %w", ErrTampered)

// resolveHold returns whether id is under legal hold, from the state chain
// and md (its key record); see the comment at the top of this file.
func (v *Vault) resolveHold(ctx context.Context, id objectID, md envelope.Metadata) (bool, error) {
	held, seen, err := v.chain.hold(ctx, id)
	switch {
	case errors.Is(err, errStateInDoubt):
		return false, fmt.Errorf("vault: object %s: %w", id, errHoldInDoubt)
	case err != nil:
		// The chain could not be read (a store error): nothing is known.
		return false, fmt.Errorf("vault: object %s: legal hold: %w", id, err)
	case !seen && !md.LegalHold:
		return false, nil
	case !seen || held != md.LegalHold:
		return false, fmt.Errorf("vault: object %s: %w", id, errHoldInDoubt)
	}
	return held, nil
}

// Hold puts a document under legal hold: it no longer expires, Sweep skips
// it, Delete and EraseSubject refuse it, until Release. The hold is
// audited, then written to the state chain (signed, hash-linked, write-once
// where the store allows, followed by every instance), then to the
// document's key record; putting back an older key record, or deleting
// anything, does not lift it (see hold.go). by is recorded in the audit
// log.
//
// Where the store deletes objects on its own schedule (store.ExpiryTagger:
// the S3 lifecycle backstop of s3store.SetExpiryRule), Hold also takes the
// payload out of that expiry, last. If that fails, Hold returns an
// *ExpiryTagError: the hold is recorded and the vault keeps the document,
// but the store could still delete the payload until a repeated Hold
// returns nil. Hold is idempotent: a repeated Hold writes no new chain
// entry, and settles a Hold interrupted before.
func (a Admin) Hold(ctx context.Context, id string, by Actor) error {
	v := a.v
	return v.setHold(ctx, id, by, true)
}

// Release lifts a legal hold. A document past its deadline is then
// expired at once (refused at read time, deleted by the next Sweep).
// Release gives the payload back to the store's own expiry, where there is
// one; if that fails it returns an *ExpiryTagError: the document is
// released and Sweep deletes it on schedule, only the store-side backstop
// does not cover it until a repeated Release returns nil.
func (a Admin) Release(ctx context.Context, id string, by Actor) error {
	v := a.v
	return v.setHold(ctx, id, by, false)
}

func (v *Vault) setHold(ctx context.Context, id string, by Actor, hold bool) error {
	ev, kind := audit.EventHold, audit.StateHold
	if !hold {
		ev, kind = audit.EventRelease, audit.StateRelease
	}
	if err := v.checkActor(string(ev), by); err != nil {
		return err
	}
	oid, err := parseObjectID(id)
	if err != nil {
		return err
	}
	// The record alone: a hold in doubt is settled by this call.
	md, key, err := v.openRecord(ctx, oid)
	if err != nil {
		return err
	}
	defer key.Destroy()
	chainHeld, seen, err := v.chain.hold(ctx, oid)
	if err != nil {
		return fmt.Errorf("vault: %s %s: %w", ev, oid, err)
	}
	if hold && !v.now().Before(md.Expires) && !(seen && chainHeld) {
		// Past its deadline and not held: expired; a hold comes too late.
		return fmt.Errorf("vault: hold %s: %w", oid, ErrExpired)
	}
	md.LegalHold = hold
	rec, err := envelope.Reseal(ctx, v.kek, md, key)
	if err != nil {
		return fmt.Errorf("vault: %s %s: %w", ev, oid, mapEnvelopeErr(err))
	}
	if err := v.audit(ctx, audit.Record{Event: ev, Outcome: audit.OutcomeOK, Object: id, Subject: hex.EncodeToString(md.SubjectMAC), Principal: by.principal(), Detail: by.reason()}); err != nil {
		return err
	}
	// The chain first, the record second: a crash between them leaves the
	// two in disagreement, which keeps the document (errHoldInDoubt) until
	// the call is repeated.
	if !seen || chainHeld != hold {
		if _, err := v.chain.append(ctx, kind, oid.String()); err != nil {
			return fmt.Errorf("vault: %s %s: %w", ev, oid, err)
		}
		v.view.witnessState(ctx)
	}
	if err := v.keys.Put(ctx, keyRecordKey(oid), bytes.NewReader(rec), int64(len(rec)), store.PutOptions{}); err != nil {
		return fmt.Errorf("vault: %s %s: %w", ev, oid, err)
	}
	// Last, once the vault itself acts on the new state: the store's own
	// expiry (the S3 lifecycle backstop) must not delete a held payload.
	if err := v.setExpirable(ctx, oid, !hold); err != nil {
		return &ExpiryTagError{Object: id, Held: hold, Err: err}
	}
	return nil
}

// setExpirable marks id's payload as expirable by the store's own expiry
// (the lifecycle rule of s3store.SetExpiryRule), or not, where the store
// has such an expiry (store.ExpiryTagger). The payload is in Config.Store
// even when key records are in Config.Storage.KeyStore.
//
// A concurrent Hold may write its chain entry and its "not expirable"
// between this Release's record and its "expirable"; so after marking a
// payload expirable, the chain is read again, and the mark is taken back if
// the document is now held or its hold is in doubt. The order of the two
// writes in Hold (chain entry, then mark) makes this check see every Hold
// whose mark it could have overwritten.
//
// A payload already gone is not an error: nothing is left for the store to
// expire.
func (v *Vault) setExpirable(ctx context.Context, id objectID, expirable bool) error {
	et, ok := v.st.(store.ExpiryTagger)
	if !ok {
		return nil
	}
	err := et.SetExpirable(ctx, blobKey(id), expirable)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil || !expirable {
		return err
	}
	if err := v.chain.follow(ctx); err == nil {
		if held, _, err := v.chain.hold(ctx, id); err == nil && !held {
			return nil
		}
	}
	if terr := et.SetExpirable(ctx, blobKey(id), false); terr != nil && !errors.Is(terr, store.ErrNotFound) {
		return terr
	}
	return nil
}
