package vault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Document is an identity document to store.
type Document struct {
	// Body is read once, streamed through encryption; never held whole.
	Body io.Reader
	// Size is the exact length of Body, or -1 when unknown. A body that
	// ends early fails with ErrTruncated, one that runs on with ErrTooLarge.
	Size int64
	// ContentType, if set, must match what the body's magic bytes say
	// (ErrUnsupportedContent otherwise). Empty: taken from the bytes.
	ContentType string
	// Kind is a short label for the document ("drivers-license",
	// "passport", ...), at most 64 bytes. Optional.
	Kind string
	// Subject is the person the document belongs to (your user ID).
	// Required. It is stored only as a keyed hash, for EraseSubject.
	Subject string
	// Retention overrides Config.Retention.Period for this document; it may not
	// exceed Config.Retention.Max. Zero: the default.
	Retention time.Duration
}

// Info describes a stored document. It holds no secret.
type Info struct {
	ID          string // 32 hex digits: 128 random bits
	Kind        string
	ContentType string
	Size        int64
	Created     time.Time
	Expires     time.Time
	LegalHold   bool
}

func infoOf(md envelope.Metadata) Info {
	return Info{
		ID: objectID(md.ObjectID).String(), Kind: md.Kind, ContentType: md.ContentType,
		Size: md.Size, Created: md.Created, Expires: md.Expires, LegalHold: md.LegalHold,
	}
}

// Put encrypts doc under a fresh data key and stores it. It streams: the
// image is never held in memory whole.
//
// The expiry index entry is written first, and only once it is durable the
// subject index entry and the key record (at once), so Sweep can always
// find what a failed or interrupted Put left; the object is readable only
// once both its key record and its payload exist (the commit). With a
// known size the index entries and the key record go while the payload is
// still uploading.
//
// The audit record is exact: a "put ok" record is written only once the
// document is committed, and Put returns success only once it is durable.
// If it cannot be written, the commit is undone (the key record deleted)
// and Put fails with ErrAuditUnavailable; every other failure is audited
// as a refusal, and no "put ok" record exists for it. One case is
// ambiguous: ctx ends while the "put ok" record may be in a batch being
// written. Then the document is left committed, so that a "put ok" record
// that lands still names a stored document; its ID was never returned, so
// it cannot be granted, and Sweep shreds it at its deadline with a receipt.
//
// Errors name what failed: the body (ErrTooLarge, ErrTruncated, a read
// error), the store (ErrStoreFull for a full disk, ErrStoreUnavailable),
// the KEK (ErrKEKUnavailable) or the audit log (ErrAuditUnavailable): of
// the writes that run at once, the first to fail is reported, not the
// cancellation it caused in the others.
//
// Deadlines: Put returns within ctx's deadline plus DeadlineMargin, whatever
// the store does (AuditMargin of it to audit the refusal). Removing what a
// failed Put wrote runs in the background, bounded by PutCleanupTimeout;
// what it cannot remove (the store is down) Sweep collects: payloads after
// Config.Retention.OrphanGrace, index entries and key records at the document's
// deadline. The expiry index entry that leads Sweep to the rest is written
// before any other object that names the document.
func (v *Vault) Put(ctx context.Context, doc Document) (Info, error) {
	if v.isClosed() {
		return Info{}, ErrClosed
	}
	// A canary may shadow this upload (canary.go): it is planned as the
	// upload arrives, from its subject and sniffed type, and learns from it
	// once stored how long such a body takes to arrive.
	var plan *canaryPlan
	body := &timedReader{r: doc.Body}
	if doc.Body != nil && doc.Subject != "" {
		br := bufio.NewReaderSize(body, 512)
		head, _ := br.Peek(sniffLen)
		sys, _ := v.keyset()
		plan = v.planShadow(doc, hex.EncodeToString(sys.subjectMAC(doc.Subject)), sniff(head), v.now())
		doc.Body = br
	}
	info, rec, err := v.put(ctx, doc, false)
	if err == nil {
		v.noteUpload(info, body.blocked)
	} else {
		v.canaries.cancelPlan(plan)
	}
	if err != nil {
		if !errors.Is(err, ErrAuditUnavailable) {
			rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
			_ = v.auditLate(ctx, rec)
		}
		return Info{}, err
	}
	return info, nil
}

const (
	// PutAuditMargin is AuditMargin, under its former name.
	//
	// Deprecated: use AuditMargin, which every call applies (Put returns
	// within its deadline plus DeadlineMargin).
	PutAuditMargin = AuditMargin
	// PutCleanupTimeout bounds the background removal of what a failed
	// Put wrote; Sweep collects whatever it could not remove.
	PutCleanupTimeout = 30 * time.Second
)

func (v *Vault) put(ctx context.Context, doc Document, canary bool) (Info, audit.Record, error) {
	if doc.Body == nil {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: nil body: %w", ErrInvalidArgument)
	}
	if doc.Subject == "" {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: subject required: %w", ErrInvalidArgument)
	}
	if len(doc.Kind) > 64 {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: kind over 64 bytes: %w", ErrInvalidArgument)
	}
	retention := v.cfg.Retention.Period
	if doc.Retention != 0 {
		if doc.Retention < 0 || doc.Retention > v.cfg.Retention.Max {
			return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: retention outside (0, MaxRetention]: %w", ErrInvalidArgument)
		}
		retention = doc.Retention
	}
	if doc.Size > v.cfg.Storage.MaxSize {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: declared size over the %d-byte limit: %w", v.cfg.Storage.MaxSize, ErrTooLarge)
	}
	if doc.Size < -1 {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: negative size: %w", ErrInvalidArgument)
	}
	declared := normalizeType(doc.ContentType)
	// The deadline is set by this clock: not while it disagrees with the
	// store's (an early deadline would be an early shred).
	if err := v.checkClock(ctx, "put"); err != nil {
		return Info{}, audit.Record{Event: audit.EventPut}, err
	}

	br := bufio.NewReaderSize(doc.Body, 512)
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: read body: %w", err)
	}
	ct := sniff(head)
	if ct == "" || !typeMatches(declared, ct) {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: %w", ErrUnsupportedContent)
	}

	sys, _ := v.keyset()
	id, err := v.newID(canary)
	if err != nil {
		return Info{}, audit.Record{Event: audit.EventPut}, err
	}
	mac := sys.subjectMAC(doc.Subject)
	now := v.now().UTC()
	md := envelope.Metadata{
		VaultID: sys.vaultID, ObjectID: id, Kind: doc.Kind, ContentType: ct,
		Size: doc.Size, Created: now, Expires: now.Add(retention),
		SubjectMAC: mac, Canary: canary,
	}
	if md.Size < 0 {
		md.Size = 0 // resealed with the counted size below
	}
	record, key, err := envelope.Seal(ctx, v.kek, md)
	if err != nil {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: seal: %w", mapEnvelopeErr(err))
	}
	defer key.Destroy()

	info := infoOf(md)
	subj := fmt.Sprintf("%x", mac)
	// Everything Put may create. On failure all of it is deleted, whether
	// or not its write reported success: a write cancelled mid-flight may
	// still have landed (deletes are idempotent).
	written := []string{keyRecordKey(id), blobKey(id), subjectIndexKey(mac, id), expiryIndexKey(md.Expires, id)}
	refusal := audit.Record{Event: audit.EventPut, Object: info.ID, Subject: subj}
	fail := func(err error) (Info, audit.Record, error) {
		v.cleanupInBackground(ctx, written)
		return Info{}, refusal, err
	}

	body := &bodyReader{r: br, declared: doc.Size, max: v.cfg.Storage.MaxSize}
	pctx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()
	// The first write to fail is what happened; the others then fail only
	// because they are cancelled (a full disk must not read as "context
	// canceled").
	var (
		firstMu sync.Mutex
		first   error
	)
	cancel := func(err error) {
		firstMu.Lock()
		if first == nil {
			first = err
		}
		firstMu.Unlock()
		cancelWrites()
	}
	putRecord := func(ctx context.Context) error {
		return v.keys.Put(ctx, keyRecordKey(id), bytes.NewReader(record), int64(len(record)), store.PutOptions{IfAbsent: true})
	}
	// With the size known up front the key record is final before the
	// payload is, so it goes as soon as the expiry entry is durable,
	// while the payload is still uploading. Nothing is readable until the
	// payload is there too, and no one knows the ID before Put returns; a
	// crash leaves a key record that the expiry index (written before it)
	// leads Sweep to.
	early := doc.Size >= 0
	var (
		wg                                       sync.WaitGroup
		payloadErr, indexErr, subjectErr, keyErr error
	)
	// The payload's last segment waits for the subject entry: the document
	// is never complete (key record and payload) without the entry that
	// leads EraseSubject and ListSubject to it, whatever the order in
	// which the two small writes land. The upload is the long pole, so
	// this costs nothing unless the store is slower at small writes.
	indexed := make(chan struct{})
	wg.Go(func() {
		if payloadErr = v.putPayload(pctx, id, key, body, doc.Size, indexed); payloadErr != nil {
			cancel(payloadErr)
		}
	})
	wg.Go(func() {
		// The expiry entry first; once it is durable, the subject entry
		// and the key record at once (each only needs the expiry entry
		// before it: Sweep reaches both through it).
		if indexErr = v.putExpiryIndex(pctx, md.Expires, mac, id); indexErr != nil {
			cancel(indexErr)
			return
		}
		var iwg sync.WaitGroup
		iwg.Go(func() {
			if subjectErr = v.putSubjectIndex(pctx, mac, id); subjectErr != nil {
				cancel(subjectErr)
				return
			}
			close(indexed)
		})
		if early {
			if keyErr = putRecord(pctx); keyErr != nil {
				keyErr = fmt.Errorf("key record: %w", keyErr)
				cancel(keyErr)
			}
		}
		iwg.Wait()
	})
	wg.Wait()
	if err := firstError(body.err, first, payloadErr, indexErr, subjectErr, keyErr); err != nil {
		return fail(fmt.Errorf("vault: put: %w", err))
	}
	if !early {
		// Size unknown until the body ended: seal the counted size, then
		// write the key record.
		md.Size = body.n
		info.Size = body.n
		if record, err = envelope.Reseal(ctx, v.kek, md, key); err != nil {
			return fail(fmt.Errorf("vault: put: seal: %w", mapEnvelopeErr(err)))
		}
		if err := putRecord(ctx); err != nil {
			return fail(fmt.Errorf("vault: put: key record: %w", err))
		}
	}
	// Committed. Only now is "put ok" written; without it the commit is
	// undone, so that the record exists exactly when the document does.
	// No content type in the record: a canary's would follow the real mix,
	// but what is not written cannot tell anything (canary.go).
	okRec := audit.Record{Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: info.ID, Subject: subj}
	if err := v.audit(ctx, okRec); err != nil {
		if ctx.Err() != nil {
			// The deadline passed while the record may have been in a
			// batch being written: it may still land, so the document
			// stays (a "put ok" record never names a missing document).
			// Its ID was never returned, so no one can grant it; Sweep
			// shreds it at its deadline, with a receipt.
			return Info{}, refusal, err
		}
		v.cleanupInBackground(ctx, written)
		return Info{}, refusal, err
	}
	return info, okRec, nil
}

// cleanupInBackground deletes what a failed Put wrote, key record first
// (from then on the rest is unreadable noise), without making Put wait:
// detached from ctx, bounded by PutCleanupTimeout. What it cannot delete,
// Sweep collects (an orphan payload after Config.Retention.OrphanGrace; index
// entries and a key record through the expiry index at the deadline).
func (v *Vault) cleanupInBackground(ctx context.Context, keys []string) {
	v.detach(ctx, PutCleanupTimeout, func(cctx context.Context) {
		if err := v.keys.Delete(cctx, keys[0]); err != nil {
			return // the key record may remain: keep the index that leads Sweep to it
		}
		for _, k := range keys[1:] {
			if err := v.st.Delete(cctx, k); err != nil {
				return // keep the rest (expiry index last) for Sweep
			}
		}
	})
}

// putExpiryIndex writes the expiry index entry, the first object that
// names the document: Sweep finds everything a Put left through it (its
// body is the subject's keyed hash, so that it can remove the subject
// entry too, see expireOne). Nothing else that names the document is
// written before it is durable: a subject entry or key record written
// alongside could land while the expiry entry does not (the store killed
// between the two), and nothing would ever lead Sweep to it.
func (v *Vault) putExpiryIndex(ctx context.Context, expires time.Time, mac []byte, id objectID) error {
	return v.st.Put(ctx, expiryIndexKey(expires, id), bytes.NewReader(mac), int64(len(mac)), store.PutOptions{})
}

// putSubjectIndex writes the subject index entry (EraseSubject's way to
// the document), once the expiry entry is durable.
func (v *Vault) putSubjectIndex(ctx context.Context, mac []byte, id objectID) error {
	return v.st.Put(ctx, subjectIndexKey(mac, id), bytes.NewReader(nil), 0, store.PutOptions{})
}

// putPayload streams the body through encryption into blobs/<id>.
func (v *Vault) putPayload(ctx context.Context, id objectID, key *envelope.Key, body io.Reader, size int64, indexed <-chan struct{}) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc, err := key.Encrypt(pw)
		if err == nil {
			_, err = io.Copy(enc, body)
			if err == nil {
				// The last segment goes only on Close: until then
				// the store cannot have the whole payload.
				select {
				case <-indexed:
				case <-ctx.Done():
					err = context.Cause(ctx)
				}
			}
			if err == nil {
				err = enc.Close()
			}
		}
		pw.CloseWithError(err)
	}()
	psize := int64(-1)
	if size >= 0 {
		psize = envelope.PayloadSize(size)
	}
	// Expirable: the store's own expiry (the S3 lifecycle backstop) may
	// delete the payload; Hold takes that mark back.
	err := v.st.Put(ctx, blobKey(id), pr, psize, store.PutOptions{IfAbsent: true, Expirable: true})
	pr.CloseWithError(errors.New("payload write finished")) // unblock the encrypter on failure
	<-done
	return err
}

// bodyReader enforces the declared size and the maximum size while
// counting; it records the first violation so Put can report it precisely.
type bodyReader struct {
	r        io.Reader
	declared int64 // -1: unknown
	max      int64
	n        int64
	err      error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	limit := b.max
	if b.declared >= 0 {
		limit = b.declared
	}
	// Read at most one byte past the limit to detect an over-long body.
	if rem := limit + 1 - b.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > limit {
		if b.declared >= 0 {
			b.err = fmt.Errorf("body longer than its declared size: %w", ErrTooLarge)
		} else {
			b.err = fmt.Errorf("body over the %d-byte limit: %w", b.max, ErrTooLarge)
		}
		return 0, b.err
	}
	if err == io.EOF && b.declared >= 0 && b.n < b.declared {
		b.err = fmt.Errorf("body ended after %d of %d bytes: %w", b.n, b.declared, ErrTruncated)
		return n, b.err
	}
	if err != nil && err != io.EOF {
		b.err = fmt.Errorf("reading body: %w", err)
		return n, b.err
	}
	return n, err
}

func firstError(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
