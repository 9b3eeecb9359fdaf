package vault

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

const (
	// claimStale is how long a sweeper's claim on an object blocks others;
	// after it, a crashed sweeper's claim is taken over.
	claimStale = 10 * time.Minute
	// DefaultOrphanGrace is how long a payload may exist without a key
	// record before Sweep collects it (a Put in flight has none yet).
	DefaultOrphanGrace = time.Hour
)

func claimKey(id objectID) string  { return "claims/" + id.String() }
func orphanKey(id objectID) string { return "orphans/" + id.String() }

// SweepReport counts what one Sweep did.
type SweepReport struct {
	Expired  int // objects shredded and deleted because their deadline passed
	Held     int // expired objects kept because of a legal hold
	Orphans  int // payloads without a key record, collected after the grace period
	Dangling int // index entries that pointed nowhere, removed
	Ledger   int // spent-token entries past expiry plus leeway, removed
	Busy     int // objects another sweeper was working on
	// Unknown counts due objects whose expiry or hold could not be
	// established (KEK unavailable or hanging, store error, hold markers
	// that disagree with the key record): kept, untouched, for a later
	// Sweep. Non-zero is worth a look; hold doubts also raise AlertTampered.
	Unknown int
	// Quarantined counts objects whose key record fails authentication:
	// kept (not shredded) under quarantine/<id>, audited and alerted
	// (AlertTampered) the first time, and counted by every Sweep until an
	// operator resolves them.
	Quarantined int
}

// AlertTampered: a key record failed authentication (the object is
// quarantined), or a document's legal-hold markers and key record disagree
// (a rollback from a backup, or an interrupted Hold/Release). Nothing is
// destroyed on it.
const AlertTampered AlertKind = "object-tampered"

func quarantineKey(id objectID) string { return "quarantine/" + id.String() }

// Sweep deletes what has expired and collects garbage. It finds expired
// objects through the expiry index (never by reading every object),
// shreds each (key record deleted before payload), writes a deletion
// receipt to the audit log per object, and removes payloads left without
// a key record by failed Puts, and spent-token entries that can no longer
// matter. It is idempotent, and several instances may sweep at once: a
// create-only claim makes each object's deletion happen once. A held
// document past its deadline is kept, and its payload is taken out of the
// store's own expiry again (store.ExpiryTagger), which repairs a Hold whose
// ExpiryTagError was not acted on.
//
// by names who runs it (an operator, "cron:sweep"); it is recorded in the
// sweep's audit records and deletion receipts.
func (a Admin) Sweep(ctx context.Context, by Actor) (SweepReport, error) {
	v := a.v
	return v.sweep(ctx, by, nil)
}

// SweepProgress is what SweepWithProgress reports after each due document.
type SweepProgress struct {
	Done, Total int // expiry index entries handled, and due in all
	Report      SweepReport
}

// SweepWithProgress is Sweep, calling progress after each document whose
// expiry hour has come (for a progress bar; it first counts them).
func (a Admin) SweepWithProgress(ctx context.Context, by Actor, progress func(SweepProgress)) (SweepReport, error) {
	v := a.v
	if progress == nil {
		return v.sweep(ctx, by, nil)
	}
	total := 0
	nowHour := v.now().UTC().Format("2006010215")
	for k, err := range v.st.List(ctx, "index/expiry/") {
		if err != nil {
			return SweepReport{}, fmt.Errorf("vault: sweep: %w", err)
		}
		if hour, _, _ := strings.Cut(strings.TrimPrefix(k, "index/expiry/"), "/"); hour > nowHour {
			break
		}
		total++
	}
	done := 0
	return v.sweep(ctx, by, func(r SweepReport) {
		done++
		progress(SweepProgress{Done: done, Total: max(total, done), Report: r})
	})
}

func (v *Vault) sweep(ctx context.Context, by Actor, progress func(SweepReport)) (SweepReport, error) {
	var rep SweepReport
	if err := v.checkActor("sweep", by); err != nil {
		return rep, err
	}
	// Deadlines are decided by this clock: not while it disagrees with
	// the store's (clock.go).
	if err := v.checkClock(ctx, "sweep"); err != nil {
		return rep, err
	}
	// Holds decide what is shredded: read the state chain up to its end
	// now, not as of the last background read.
	if err := v.chain.follow(ctx); err != nil {
		return rep, fmt.Errorf("vault: sweep: reading the state chain: %w", err)
	}
	if err := v.sweepExpired(ctx, by, &rep, progress); err != nil {
		return rep, err
	}
	if err := v.sweepLedger(ctx, &rep); err != nil {
		return rep, err
	}
	if err := v.sweepOrphans(ctx, &rep); err != nil {
		return rep, err
	}
	if err := v.sweepLimiter(ctx); err != nil {
		return rep, err
	}
	if rep != (SweepReport{}) {
		detail := fmt.Sprintf("expired %d held %d orphans %d dangling %d ledger %d busy %d unknown %d quarantined %d",
			rep.Expired, rep.Held, rep.Orphans, rep.Dangling, rep.Ledger, rep.Busy, rep.Unknown, rep.Quarantined)
		if by.Reason != "" {
			detail += ": " + by.reason()
		}
		if err := v.audit(ctx, audit.Record{Event: audit.EventSweep, Outcome: audit.OutcomeOK, Principal: by.principal(), Detail: detail}); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// sweepWorkers shred that many documents at once: their deletes overlap
// and their deletion receipts share audit writes (group commit).
const sweepWorkers = 8

func (v *Vault) sweepExpired(ctx context.Context, by Actor, rep *SweepReport, progress func(SweepReport)) error {
	now := v.now().UTC()
	nowHour := now.Format("2006010215")
	type job struct {
		id  objectID
		key string
	}
	feed := func(ctx context.Context, send func(job) bool) error {
		for k, err := range v.st.List(ctx, "index/expiry/") {
			if err != nil {
				return fmt.Errorf("vault: sweep: %w", err)
			}
			rest := strings.TrimPrefix(k, "index/expiry/")
			hour, idStr, ok := strings.Cut(rest, "/")
			if !ok || len(hour) != 10 {
				continue // not ours; leave it
			}
			if hour > nowHour {
				break // lexical order is time order: nothing further has expired
			}
			id, err := parseObjectID(idStr)
			if err != nil {
				continue
			}
			if !send(job{id, k}) {
				break
			}
		}
		return nil
	}
	work := func(ctx context.Context, j job, r *SweepReport) error {
		return v.expireOne(ctx, by, j.id, j.key, now, r)
	}
	return inParallel(ctx, sweepWorkers, feed, work, func(r SweepReport, err error) {
		rep.add(r)
		if err == nil && progress != nil {
			progress(*rep)
		}
	})
}

func (r *SweepReport) add(o SweepReport) {
	r.Expired += o.Expired
	r.Held += o.Held
	r.Orphans += o.Orphans
	r.Dangling += o.Dangling
	r.Ledger += o.Ledger
	r.Busy += o.Busy
	r.Unknown += o.Unknown
	r.Quarantined += o.Quarantined
}

func (v *Vault) expireOne(ctx context.Context, by Actor, id objectID, indexKey string, now time.Time, rep *SweepReport) error {
	md, key, err := v.loadRecord(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		// Shredded already (or never committed): what is left is garbage,
		// including the subject index entry a failed Put left, which the
		// expiry index entry names.
		keys := []string{blobKey(id), orphanKey(id)}
		if sk, ok := v.subjectKeyFromExpiryIndex(ctx, indexKey, id); ok {
			keys = append(keys, sk)
		}
		if err := v.deleteAll(ctx, append(keys, indexKey, claimKey(id))...); err != nil {
			return err
		}
		rep.Dangling++
		return nil
	case errors.Is(err, errHoldInDoubt):
		// Someone rolled back a hold or a release (or one was
		// interrupted): keep the document, say so.
		rep.Unknown++
		v.alert(ctx, Alert{Kind: AlertTampered, Object: id.String(), Detail: "legal hold markers and key record disagree: kept"})
		_ = v.setExpirable(ctx, id, false) // kept: not by the store's expiry either
		return nil
	case errors.Is(err, ErrTampered):
		// A record that fails authentication is evidence: quarantine it
		// and raise the alarm; never shred it silently.
		return v.quarantine(ctx, by, id, audit.EventExpire, rep)
	case err != nil:
		// KEK unavailable or hanging, a store error: the deadline and the
		// hold are unknown, so nothing is destroyed.
		rep.Unknown++
		if ctx.Err() != nil {
			return err
		}
		return nil
	}
	key.Destroy()
	if md.LegalHold {
		rep.Held++
		// Again, in case a Hold failed to take the payload out of the
		// store's own expiry and was not repeated: the lifecycle rule's
		// days run out only after the deadline, so Sweep gets here first.
		// Best effort; Hold reported its own failure.
		_ = v.setExpirable(ctx, id, false)
		return nil
	}
	if md.Expires.After(now) {
		return nil // same hour bucket, not yet due
	}
	return v.shred(ctx, by, id, &md, audit.EventExpire, "retention-deadline", rep)
}

// quarantine marks id's key record as failing authentication: it is kept
// (not shredded), audited and alerted the first time, and counted in rep.
func (v *Vault) quarantine(ctx context.Context, by Actor, id objectID, ev audit.Event, rep *SweepReport) error {
	body := stamp(v.now())
	err := v.st.Put(ctx, quarantineKey(id), bytes.NewReader(body), int64(len(body)), store.PutOptions{IfAbsent: true})
	switch {
	case err == nil:
		rec := audit.Record{Event: ev, Outcome: audit.OutcomeRefused, Object: id.String(), Reason: "tampered", Principal: by.principal(),
			Detail: "quarantined: the key record fails authentication; kept for inspection, not shredded"}
		if err := v.audit(ctx, rec); err != nil {
			// Unmarked again so that the next Sweep reports it; in the
			// background (the store may be what failed).
			v.detach(ctx, lateTimeout, func(dctx context.Context) { _ = v.st.Delete(dctx, quarantineKey(id)) })
			return err
		}
		v.alert(ctx, Alert{Kind: AlertTampered, Object: id.String(), Detail: "key record fails authentication: quarantined"})
	case errors.Is(err, store.ErrExists):
		// Quarantined and reported before.
	default:
		return fmt.Errorf("vault: quarantine %s: %w", id, err)
	}
	if rep != nil {
		rep.Quarantined++
	}
	return nil
}

// subjectKeyFromExpiryIndex returns the subject index key named in the
// body of an expiry index entry (Put writes the subject's keyed hash
// there), so that Sweep can remove what a failed Put left.
func (v *Vault) subjectKeyFromExpiryIndex(ctx context.Context, indexKey string, id objectID) (string, bool) {
	b, err := getSmall(ctx, v.st, indexKey, envelope.SubjectMACLen+1)
	if err != nil || len(b) != envelope.SubjectMACLen {
		return "", false
	}
	return subjectIndexKey(b, id), true
}

// shred removes one object for good. Order, for crash safety: claim,
// receipt in the audit log, subject index (its name needs the metadata),
// key record (the shred: from here the payload is noise), payload, claim,
// expiry index. A crash leaves the expiry index entry, so the next Sweep
// finishes the job.
func (v *Vault) shred(ctx context.Context, by Actor, id objectID, md *envelope.Metadata, ev audit.Event, reason string, rep *SweepReport) error {
	if err := v.checkClock(ctx, "shred"); err != nil {
		return err
	}
	claimed, err := v.claim(ctx, id)
	if err != nil {
		return err
	}
	if !claimed {
		if rep != nil {
			rep.Busy++
		}
		return nil
	}
	// Another sweeper may have finished this object between our read of
	// the key record and our claim (it releases its claim last): then
	// there is nothing left to shred and no receipt to write.
	if _, err := getSmall(ctx, v.keys, keyRecordKey(id), maxKeyRecord); errors.Is(err, store.ErrNotFound) {
		keys := []string{blobKey(id), orphanKey(id), claimKey(id)}
		if md != nil {
			keys = append(keys, expiryIndexKey(md.Expires, id))
		}
		if rep != nil {
			rep.Busy++
		}
		return v.deleteAll(ctx, keys...)
	} else if err != nil {
		return fmt.Errorf("vault: shred %s: %w", id, err)
	}
	rec := audit.Record{Event: ev, Outcome: audit.OutcomeOK, Object: id.String(), Reason: reason, Principal: by.principal(), Detail: by.reason()}
	var keys []string
	if md != nil {
		rec.Subject = hex.EncodeToString(md.SubjectMAC)
		keys = append(keys, subjectIndexKey(md.SubjectMAC, id))
	}
	if err := v.audit(ctx, rec); err != nil {
		// No receipt, no shred: give the claim back for the next sweeper,
		// in the background (the store may be what failed; a claim left
		// behind is taken over after claimStale).
		v.detach(ctx, lateTimeout, func(dctx context.Context) { _ = v.st.Delete(dctx, claimKey(id)) })
		return err
	}
	if err := v.deleteAll(ctx, keys...); err != nil {
		return err
	}
	if err := v.keys.Delete(ctx, keyRecordKey(id)); err != nil {
		return fmt.Errorf("vault: shred %s: %w", id, err)
	}
	// The expiry index entry goes last: while it exists, a later Sweep
	// finds and finishes whatever an interrupted one left.
	keys = []string{blobKey(id), orphanKey(id), claimKey(id)}
	if md != nil {
		keys = append(keys, expiryIndexKey(md.Expires, id))
	}
	if err := v.deleteAll(ctx, keys...); err != nil {
		return err
	}
	if rep != nil {
		rep.Expired++
	}
	return nil
}

// claim takes the create-only claim on id. A claim this Vault made
// earlier (an interrupted Sweep) is its own to resume; another's claim older
// than claimStale (its sweeper crashed) is taken over.
func (v *Vault) claim(ctx context.Context, id objectID) (bool, error) {
	body := append(stamp(v.now()), v.instance[:]...)
	err := v.st.Put(ctx, claimKey(id), bytes.NewReader(body), int64(len(body)), store.PutOptions{IfAbsent: true})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, store.ErrExists) {
		return false, fmt.Errorf("vault: claim %s: %w", id, err)
	}
	b, gerr := getSmall(ctx, v.st, claimKey(id), 64)
	if gerr != nil || len(b) != len(body) {
		return false, nil
	}
	if bytes.Equal(b[8:], v.instance[:]) {
		return true, nil
	}
	if v.now().Sub(unstamp(b[:8])) < claimStale {
		return false, nil
	}
	if err := v.st.Delete(ctx, claimKey(id)); err != nil {
		return false, fmt.Errorf("vault: claim %s: %w", id, err)
	}
	err = v.st.Put(ctx, claimKey(id), bytes.NewReader(body), int64(len(body)), store.PutOptions{IfAbsent: true})
	return err == nil, nil
}

func (v *Vault) deleteAll(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := v.st.Delete(ctx, k); err != nil {
			return fmt.Errorf("vault: delete: %w", err)
		}
	}
	return nil
}

func stamp(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func unstamp(b []byte) time.Time { return time.Unix(0, int64(binary.BigEndian.Uint64(b))) }

// sweepLedger adopts and collects the single-use ledger (spend.go).
func (v *Vault) sweepLedger(ctx context.Context, rep *SweepReport) error {
	// collectLedger adopts un-folded spend entries first and deletes only
	// entries past ledgerCollectible's rule (see spend.go): never one
	// whose release record is not yet in a log.
	n, err := v.collectLedger(ctx)
	rep.Ledger += n
	return err
}

// sweepOrphans finds payloads without a key record by walking the two
// sorted listings side by side (names only, no reads). An orphan is first
// marked; it is deleted at a later Sweep once the mark is older than the
// grace period, so a Put still in flight is never touched.
func (v *Vault) sweepOrphans(ctx context.Context, rep *SweepReport) error {
	nextKey, stop := iter.Pull2(v.keys.List(ctx, "keys/"))
	defer stop()
	cur, kerr, kok := nextKey()
	for k, err := range v.st.List(ctx, "blobs/") {
		if err != nil {
			return fmt.Errorf("vault: sweep orphans: %w", err)
		}
		id := strings.TrimPrefix(k, "blobs/")
		for kok && kerr == nil && strings.TrimPrefix(cur, "keys/") < id {
			cur, kerr, kok = nextKey()
		}
		if kerr != nil {
			return fmt.Errorf("vault: sweep orphans: %w", kerr)
		}
		if kok && strings.TrimPrefix(cur, "keys/") == id {
			continue // committed object
		}
		oid, err := parseObjectID(id)
		if err != nil {
			continue
		}
		if err := v.collectOrphan(ctx, oid, rep); err != nil {
			return err
		}
	}
	return nil
}

func (v *Vault) collectOrphan(ctx context.Context, id objectID, rep *SweepReport) error {
	b, err := getSmall(ctx, v.st, orphanKey(id), 64)
	if errors.Is(err, store.ErrNotFound) {
		body := stamp(v.now())
		err := v.st.Put(ctx, orphanKey(id), bytes.NewReader(body), int64(len(body)), store.PutOptions{IfAbsent: true})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("vault: mark orphan: %w", err)
		}
		return nil
	}
	if err != nil || len(b) != 8 {
		return err
	}
	if v.now().Sub(unstamp(b)) < v.orphanGrace() {
		return nil
	}
	// Re-check: the Put may have committed since the listing.
	if _, err := getSmall(ctx, v.keys, keyRecordKey(id), maxKeyRecord); err == nil {
		return v.st.Delete(ctx, orphanKey(id))
	}
	if err := v.deleteAll(ctx, blobKey(id), orphanKey(id)); err != nil {
		return err
	}
	rep.Orphans++
	return nil
}

func (v *Vault) orphanGrace() time.Duration {
	if v.cfg.Retention.OrphanGrace > 0 {
		return v.cfg.Retention.OrphanGrace
	}
	return DefaultOrphanGrace
}

// EraseSubject shreds and deletes every document of one subject (a member
// leaving), found through the subject index, and audits each. Documents
// under legal hold are kept: then the error wraps ErrHeld and n counts
// only what was erased. by is recorded in the audit log.
func (a Admin) EraseSubject(ctx context.Context, subject string, by Actor) (n int, err error) {
	v := a.v
	if err := v.checkActor("erase", by); err != nil {
		return 0, err
	}
	if subject == "" {
		return 0, fmt.Errorf("vault: erase: subject required: %w", ErrInvalidArgument)
	}
	mac, entries := v.subjectIndex(ctx, subject, "erase")
	held, unknown := 0, 0
	var firstUnknown error
	for e, lerr := range entries {
		if lerr != nil {
			return n, lerr
		}
		id := e.id
		md, lerr := v.recordForDeletion(ctx, id)
		if errors.Is(lerr, ErrNotFound) {
			if err := v.st.Delete(ctx, e.key); err != nil { // dangling entry
				return n, err
			}
			continue
		}
		if lerr != nil && !errors.Is(lerr, errHoldInDoubt) && errors.Is(lerr, ErrTampered) {
			if err := v.quarantine(ctx, by, id, audit.EventErase, nil); err != nil {
				return n, err
			}
		}
		if lerr != nil {
			// Hold or deadline unknown: keep it, report it.
			if ctx.Err() != nil {
				return n, lerr
			}
			unknown++
			if firstUnknown == nil {
				firstUnknown = lerr
			}
			continue
		}
		if md.LegalHold {
			held++
			continue
		}
		var rep SweepReport
		if err := v.shred(ctx, by, id, &md, audit.EventErase, "subject-erased", &rep); err != nil {
			return n, err
		}
		n += rep.Expired
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventErase, Outcome: audit.OutcomeOK, Subject: mac,
		Principal: by.principal(), Reason: "subject-erased", Detail: fmt.Sprintf("erased %d held %d unknown %d: %s", n, held, unknown, by.reason())}); err != nil {
		return n, err
	}
	if unknown > 0 {
		return n, fmt.Errorf("vault: erase: %d documents kept, their hold or key record could not be checked: %w", unknown, firstUnknown)
	}
	if held > 0 {
		return n, fmt.Errorf("vault: erase: %d documents kept: %w", held, ErrHeld)
	}
	return n, nil
}

// Delete shreds and deletes one document now (a decision was made, the
// member asked). It refuses a document under legal hold with ErrHeld. It
// destroys nothing when it cannot establish the hold: with the KEK
// unavailable it fails with ErrKEKUnavailable; when the hold markers and
// the key record disagree, or the key record fails authentication (then
// the object is quarantined and AlertTampered raised), with ErrTampered.
// by is recorded in the audit log.
func (a Admin) Delete(ctx context.Context, id string, by Actor) error {
	v := a.v
	if err := v.checkActor("delete", by); err != nil {
		return err
	}
	oid, err := parseObjectID(id)
	if err != nil {
		return err
	}
	md, err := v.recordForDeletion(ctx, oid)
	if err != nil {
		if errors.Is(err, ErrTampered) && !errors.Is(err, errHoldInDoubt) {
			if qerr := v.quarantine(ctx, by, oid, audit.EventDelete, nil); qerr != nil {
				return errors.Join(err, qerr)
			}
			return fmt.Errorf("vault: delete %s: quarantined, not deleted: %w", oid, err)
		}
		if !errors.Is(err, ErrNotFound) {
			// Hold or record unknown (KEK unavailable, hold in doubt):
			// nothing is destroyed.
			_ = v.auditLate(ctx, audit.Record{Event: audit.EventDelete, Outcome: audit.OutcomeRefused, Object: id, Reason: reasonOf(err), Principal: by.principal(), Detail: by.reason()})
		}
		return err
	}
	if md.LegalHold {
		_ = v.auditLate(ctx, audit.Record{Event: audit.EventDelete, Outcome: audit.OutcomeRefused, Object: id, Reason: "legal-hold", Principal: by.principal(), Detail: by.reason()})
		return fmt.Errorf("vault: delete %s: %w", oid, ErrHeld)
	}
	return v.shred(ctx, by, oid, &md, audit.EventDelete, "requested", nil)
}

// recordForDeletion opens id's key record and resolves its legal hold from
// the hold markers, whatever the deadline (a deletion always depends on the
// hold). The data key is destroyed at once.
func (v *Vault) recordForDeletion(ctx context.Context, id objectID) (envelope.Metadata, error) {
	// The hold decides: read the state chain up to its end first.
	if err := v.chain.follow(ctx); err != nil {
		return envelope.Metadata{}, fmt.Errorf("vault: object %s: reading the state chain: %w", id, err)
	}
	md, key, err := v.openRecord(ctx, id)
	if err != nil {
		return md, err
	}
	key.Destroy()
	held, err := v.resolveHold(ctx, id, md)
	if err != nil {
		return envelope.Metadata{}, err
	}
	md.LegalHold = held
	return md, nil
}
