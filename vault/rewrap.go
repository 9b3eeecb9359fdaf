package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// rewrapClaimWait bounds how long Rewrap waits for a sweeper's claim on a
// record it has just rewritten to clear, before leaving that record to the
// sweeper (see rewrapOne).
const rewrapClaimWait = 5 * time.Second

// RewrapOptions tunes Rewrap. The zero value is ready to use.
type RewrapOptions struct {
	// Workers is how many records are re-wrapped at once (default
	// DefaultRewrapWorkers). Memory is O(Workers), not O(documents).
	Workers int
	// Progress, if set, is called (serially) after each key record with
	// the counts so far. Setting it costs one extra listing of keys/ to
	// count the records first.
	Progress func(RewrapProgress)
}

// RewrapReport counts what Rewrap did. Records are counted once per run.
type RewrapReport struct {
	// Keyset is true when this run re-wrapped the vault's own keyset
	// (false when it was under the new KEK already).
	Keyset bool
	// Rewrapped key records were under from and are now under to.
	Rewrapped int
	// Already were under to when this run reached them (a resumed run, or
	// records written by instances already wrapping with to).
	Already int
	// Other are under a KEK that is neither from nor to, or unreadable
	// (tampered): Rewrap leaves them as they are.
	Other int
	// Gone were deleted (shredded, expired) while Rewrap ran.
	Gone int
	// Busy were being shredded by a sweeper that held its claim longer
	// than Rewrap waits; the sweeper finishes them.
	Busy int
	// Remaining is how many key records are still under from after the
	// run: written meanwhile by an instance that still wraps with from.
	// Zero means from can be disabled once every instance wraps with to.
	Remaining int
}

// RewrapProgress is what RewrapOptions.Progress receives.
type RewrapProgress struct {
	Done   int // key records handled so far
	Total  int // key records counted before the run
	Report RewrapReport
}

// Rewrap re-wraps every key record and the vault's own keyset that from
// wrapped under to, without touching payloads: each data key is unwrapped
// with from and wrapped again with to, with the same metadata. This is KEK
// rotation, and the migration from one KEK to another (local: to a KMS or
// an HSM); the vault ID, every document and every token survive it.
//
// It is safe while other instances Put, Grant, Redeem and Sweep, as long as
// each can open both KEKs (Config.KEK one of them, Config.Storage.DecryptKEKs the
// other): every object is readable, under one KEK or the other, at every
// moment. The Vault it runs on must open both, or it refuses with
// ErrInvalidArgument. A record is rewritten only if it is unchanged since it was read,
// and a record that a concurrent shred deleted is not brought back.
//
// Rewrap is resumable: it keeps no state of its own, a record is under one
// KEK or the other (store writes are atomic), and a rerun after a crash
// skips what is already under to. It stops at the first KEK or store error
// (kms.ErrUnavailable reads as ErrKEKUnavailable), having changed nothing
// it could not finish. The run is audited (start and end) with by.
func (a Admin) Rewrap(ctx context.Context, from, to kms.KEK, by Actor, opts RewrapOptions) (RewrapReport, error) {
	v := a.v
	var rep RewrapReport
	if err := v.checkActor("kek rewrap", by); err != nil {
		return rep, err
	}
	if from == nil || to == nil {
		return rep, fmt.Errorf("vault: kek rewrap: from and to are required: %w", ErrInvalidArgument)
	}
	if from.ID() == to.ID() {
		return rep, fmt.Errorf("vault: kek rewrap: from and to are the same KEK: %w", ErrInvalidArgument)
	}
	if len(to.ID()) == 0 || len(to.ID()) > envelope.MaxKEKIDLen {
		return rep, fmt.Errorf("vault: kek rewrap: the new KEK's ID must be 1 to %d bytes: %w", envelope.MaxKEKIDLen, ErrInvalidArgument)
	}
	// This instance must open both while records move from one to the
	// other, and so must every other (not checkable from here).
	if r, ok := v.kek.(*kekRing); ok && (r.pick(from.ID()) == nil || r.pick(to.ID()) == nil) {
		return rep, fmt.Errorf("vault: kek rewrap: open the vault with both KEKs first (Config.KEK and Config.Storage.DecryptKEKs): %w", ErrInvalidArgument)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultRewrapWorkers
	}
	detail := clip(fmt.Sprintf("kek rewrap from %s to %s: %s", sanitize(from.ID()), sanitize(to.ID()), by.reason()), 1000)
	if err := v.audit(ctx, audit.Record{Event: audit.EventRotate, Outcome: OutcomeStarted, Reason: "kek-rewrap", Principal: by.principal(), Detail: detail}); err != nil {
		return rep, err
	}
	var err error
	if rep.Keyset, err = v.rewrapKeyset(ctx, from, to); err != nil {
		return rep, v.rewrapFailed(ctx, by, detail, rep, err)
	}
	total := 0
	if opts.Progress != nil {
		for _, lerr := range v.keys.List(ctx, "keys/") {
			if lerr != nil {
				return rep, v.rewrapFailed(ctx, by, detail, rep, fmt.Errorf("vault: kek rewrap: %w", lerr))
			}
			total++
		}
	}
	if err := v.rewrapRecords(ctx, from, to, workers, &rep, func(done int) {
		if opts.Progress != nil {
			opts.Progress(RewrapProgress{Done: done, Total: max(total, done), Report: rep})
		}
	}); err != nil {
		return rep, v.rewrapFailed(ctx, by, detail, rep, err)
	}
	counts, err := v.Admin().KEKCounts(ctx)
	if err != nil {
		return rep, v.rewrapFailed(ctx, by, detail, rep, err)
	}
	rep.Remaining = counts.Records[from.ID()]
	if err := v.audit(ctx, audit.Record{Event: audit.EventRotate, Outcome: audit.OutcomeOK, Reason: "kek-rewrap", Principal: by.principal(),
		Detail: clip(fmt.Sprintf("%s; %s", rep.summary(), detail), 1000)}); err != nil {
		return rep, err
	}
	return rep, nil
}

func (r RewrapReport) summary() string {
	return fmt.Sprintf("keyset rewrapped %t, %d records rewrapped, %d already, %d other, %d gone, %d busy, %d remaining",
		r.Keyset, r.Rewrapped, r.Already, r.Other, r.Gone, r.Busy, r.Remaining)
}

// rewrapFailed records the end of a failed run, within the call's
// deadline plus AuditMargin (see DeadlineMargin): the store may be what
// failed, and the record must not hold the call past it.
func (v *Vault) rewrapFailed(ctx context.Context, by Actor, detail string, rep RewrapReport, err error) error {
	_ = v.auditLate(ctx, audit.Record{Event: audit.EventRotate, Outcome: audit.OutcomeError, Reason: "kek-rewrap", Principal: by.principal(),
		Detail: clip(rep.summary()+"; "+detail, 1000)})
	return mapKEKErr(err)
}

// mapKEKErr adds ErrKEKUnavailable to a KEK outage.
func mapKEKErr(err error) error {
	if errors.Is(err, kms.ErrUnavailable) && !errors.Is(err, ErrKEKUnavailable) {
		return errors.Join(ErrKEKUnavailable, err)
	}
	return err
}

// rewrapKeyset re-wraps system/keyset from from to to; false when it was
// under to already.
func (v *Vault) rewrapKeyset(ctx context.Context, from, to kms.KEK) (bool, error) {
	b, err := getSmall(ctx, v.st, systemKeysetKey, maxSystemObject)
	if err != nil {
		return false, fmt.Errorf("vault: kek rewrap: load keyset: %w", err)
	}
	id, err := systemKeysetKEKID(b)
	if err != nil {
		return false, err
	}
	if id == to.ID() {
		return false, nil
	}
	sys, err := unmarshalSystemKeys(ctx, from, b)
	if err != nil {
		return false, err
	}
	cur, _ := v.keyset()
	if sys.vaultID != cur.vaultID {
		return false, fmt.Errorf("vault: kek rewrap: the keyset belongs to another vault: %w", ErrInvalidArgument)
	}
	enc, err := sys.marshal(ctx, to)
	if err != nil {
		return false, err
	}
	// Check-then-write: a token-key rotation since our read wins, and the
	// next run re-wraps its result.
	now, err := getSmall(ctx, v.st, systemKeysetKey, maxSystemObject)
	if err != nil {
		return false, fmt.Errorf("vault: kek rewrap: load keyset: %w", err)
	}
	if !bytes.Equal(now, b) {
		return false, fmt.Errorf("vault: kek rewrap: the keyset changed during the rewrap (token key rotated?); run it again: %w", ErrConflict)
	}
	if err := v.st.Put(ctx, systemKeysetKey, bytes.NewReader(enc), int64(len(enc)), store.PutOptions{}); err != nil {
		return false, fmt.Errorf("vault: kek rewrap: store keyset: %w", err)
	}
	return true, nil
}

// systemKeysetKEKID reads the KEK ID from the clear header of a wrapped
// keyset.
func systemKeysetKEKID(b []byte) (string, error) {
	if len(b) < len(systemMagic)+2 || string(b[:4]) != systemMagic || b[4] != systemVersion {
		return "", fmt.Errorf("vault: system keyset: bad header: %w", ErrTampered)
	}
	id, err := readLP(bytes.NewReader(b[5:]), 1024)
	if err != nil {
		return "", fmt.Errorf("vault: system keyset: bad header: %w", ErrTampered)
	}
	return string(id), nil
}

func (v *Vault) rewrapRecords(ctx context.Context, from, to kms.KEK, workers int, rep *RewrapReport, progress func(done int)) error {
	feed := func(ctx context.Context, send func(objectID) bool) error {
		for k, err := range v.keys.List(ctx, "keys/") {
			if err != nil {
				return fmt.Errorf("vault: kek rewrap: %w", err)
			}
			id, perr := parseObjectID(strings.TrimPrefix(k, "keys/"))
			if perr != nil {
				continue // not a key record
			}
			if !send(id) {
				break
			}
		}
		return nil
	}
	work := func(ctx context.Context, id objectID, r *RewrapReport) error {
		return v.rewrapOne(ctx, from, to, id, r)
	}
	done := 0
	return inParallel(ctx, workers, feed, work, func(r RewrapReport, err error) {
		rep.Rewrapped += r.Rewrapped
		rep.Already += r.Already
		rep.Other += r.Other
		rep.Gone += r.Gone
		rep.Busy += r.Busy
		done++
		if err == nil {
			progress(done)
		}
	})
}

// rewrapOne re-wraps one key record. The store has no compare-and-swap, so
// the record is read again just before the write and written only if it is
// unchanged (a Hold, Release or shred in between wins, and the record is
// taken again from the top). After the write, if a shred ran meanwhile
// (its claim is there, or the payload and expiry index are gone), the
// record just written must not outlive it: Rewrap waits for the claim to
// clear and deletes its own write when the object is gone.
func (v *Vault) rewrapOne(ctx context.Context, from, to kms.KEK, id objectID, rep *RewrapReport) error {
	sys, _ := v.keyset()
	// read reads the key record; gone (and counted) when it no longer exists.
	read := func() (b []byte, gone bool, err error) {
		b, err = getSmall(ctx, v.keys, keyRecordKey(id), maxKeyRecord)
		if errors.Is(err, store.ErrNotFound) {
			rep.Gone++
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("vault: kek rewrap %s: %w", id, err)
		}
		return b, false, nil
	}
	for attempt := 0; ; attempt++ {
		b, gone, err := read()
		if gone || err != nil {
			return err
		}
		kid, err := envelope.PeekKEKID(b)
		switch {
		case err != nil:
			rep.Other++ // unreadable: Sweep and Delete deal with it
			return nil
		case kid == to.ID():
			rep.Already++
			return nil
		case kid != from.ID():
			rep.Other++
			return nil
		}
		md, key, err := envelope.Open(ctx, from, sys.vaultID, id, b)
		if err != nil {
			if errors.Is(err, envelope.ErrTampered) || errors.Is(err, envelope.ErrUnsupportedVersion) {
				rep.Other++
				return nil
			}
			return fmt.Errorf("vault: kek rewrap %s: %w", id, mapKEKErr(err))
		}
		rec, err := envelope.Reseal(ctx, to, md, key)
		key.Destroy()
		if err != nil {
			return fmt.Errorf("vault: kek rewrap %s: %w", id, mapKEKErr(err))
		}
		cur, gone, err := read()
		if gone || err != nil {
			return err
		}
		if !bytes.Equal(cur, b) {
			if attempt >= 3 {
				return fmt.Errorf("vault: kek rewrap %s: the record keeps changing: %w", id, ErrConflict)
			}
			continue
		}
		if err := v.keys.Put(ctx, keyRecordKey(id), bytes.NewReader(rec), int64(len(rec)), store.PutOptions{}); err != nil {
			return fmt.Errorf("vault: kek rewrap %s: %w", id, err)
		}
		gone, busy, err := v.shreddedMeanwhile(ctx, id, md.Expires)
		switch {
		case err != nil:
			return err
		case busy:
			rep.Busy++
		case gone:
			// Our write brought back a record a shred had just deleted:
			// delete it again. The shred's receipt is in the audit log.
			if err := v.keys.Delete(ctx, keyRecordKey(id)); err != nil {
				return fmt.Errorf("vault: kek rewrap %s: %w", id, err)
			}
			rep.Gone++
		default:
			rep.Rewrapped++
		}
		return nil
	}
}

// shreddedMeanwhile tells whether the object id was shredded around a
// rewrite of its key record: it waits (bounded) for a sweeper's claim to
// clear, then reports gone when both the payload and the expiry index entry
// are absent (a shred removes the key record before them; a Put in flight
// writes the index first). busy: the claim outlived the wait.
func (v *Vault) shreddedMeanwhile(ctx context.Context, id objectID, expires time.Time) (gone, busy bool, err error) {
	deadline := time.Now().Add(rewrapClaimWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		rc, err := v.st.Get(ctx, claimKey(id))
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return false, false, fmt.Errorf("vault: kek rewrap %s: %w", id, err)
		}
		rc.Close()
		if time.Now().After(deadline) {
			return false, true, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, false, ctx.Err()
		}
	}
	for _, k := range []string{blobKey(id), expiryIndexKey(expires, id)} {
		rc, err := v.st.Get(ctx, k)
		if err == nil {
			rc.Close()
			return false, false, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return false, false, fmt.Errorf("vault: kek rewrap %s: %w", id, err)
		}
	}
	return true, false, nil
}

// KEKUsage says which KEKs wrap a vault: Records counts key records per
// KEK ID (read from each record's clear header, without unwrapping), and
// Keyset is the KEK ID of the vault's own keyset. Once a KEK ID appears in
// neither, and every instance wraps with another, that KEK can be
// disabled.
type KEKUsage struct {
	Keyset  string
	Records map[string]int
	// Unreadable counts key records whose header does not parse.
	Unreadable int
}

// KEKCounts returns the KEKUsage of the vault (see ReadKEKUsage).
func (a Admin) KEKCounts(ctx context.Context) (KEKUsage, error) {
	v := a.v
	if v.isClosed() {
		return KEKUsage{}, ErrClosed
	}
	return ReadKEKUsage(ctx, v.st, v.keys)
}

// ReadKEKUsage reads the KEKUsage of the vault kept in st (key records in
// keys, or in st when keys is nil) without opening it: it needs no KEK,
// only read access. It reads every key record once and holds only the
// counts.
func ReadKEKUsage(ctx context.Context, st, keys store.Store) (KEKUsage, error) {
	u := KEKUsage{Records: map[string]int{}}
	if keys == nil {
		keys = st
	}
	b, err := getSmall(ctx, st, systemKeysetKey, maxSystemObject)
	if err != nil {
		return u, fmt.Errorf("vault: kek usage: %w", err)
	}
	if u.Keyset, err = systemKeysetKEKID(b); err != nil {
		return u, err
	}
	for k, lerr := range keys.List(ctx, "keys/") {
		if lerr != nil {
			return u, fmt.Errorf("vault: kek usage: %w", lerr)
		}
		id, perr := parseObjectID(strings.TrimPrefix(k, "keys/"))
		if perr != nil {
			continue
		}
		rb, err := getSmall(ctx, keys, keyRecordKey(id), maxKeyRecord)
		if errors.Is(err, store.ErrNotFound) {
			continue // shredded since the listing
		}
		if err != nil {
			return u, fmt.Errorf("vault: kek usage: %w", err)
		}
		kid, err := envelope.PeekKEKID(rb)
		if err != nil {
			u.Unreadable++
			continue
		}
		if len(u.Records) >= 1024 && u.Records[kid] == 0 {
			u.Unreadable++ // bound the map: no real vault has 1024 KEKs
			continue
		}
		u.Records[kid]++
	}
	return u, nil
}
