package vault

import (
	"bufio"
	"bytes"
	"context"
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
	// Retention overrides Config.Retention for this document; it may not
	// exceed Config.MaxRetention. Zero: the default.
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
// The index markers (expiry, subject) are written before the key record,
// so Sweep can always find what a failed or interrupted Put left; the
// object is readable only once both its key record and its payload exist.
// The upload overlaps the other writes: with a known size, the key record
// and the audit record go while the payload is still uploading. On any
// failure Put removes what it wrote, and an audit "put ok" record already
// written is superseded by the refusal that follows it.
func (v *Vault) Put(ctx context.Context, doc Document) (Info, error) {
	if v.isClosed() {
		return Info{}, ErrClosed
	}
	info, rec, err := v.put(ctx, doc, false)
	if err != nil {
		if !errors.Is(err, ErrAuditUnavailable) {
			rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
			_ = v.audit(ctx, rec)
		}
		return Info{}, err
	}
	return info, nil
}

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
	retention := v.cfg.Retention
	if doc.Retention != 0 {
		if doc.Retention < 0 || doc.Retention > v.cfg.MaxRetention {
			return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: retention outside (0, MaxRetention]: %w", ErrInvalidArgument)
		}
		retention = doc.Retention
	}
	if doc.Size > v.cfg.MaxSize {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: declared size over the %d-byte limit: %w", v.cfg.MaxSize, ErrTooLarge)
	}
	if doc.Size < -1 {
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: negative size: %w", ErrInvalidArgument)
	}
	declared := normalizeType(doc.ContentType)

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
	id, err := newObjectID()
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
		return Info{}, audit.Record{Event: audit.EventPut}, fmt.Errorf("vault: put: seal: %w", err)
	}
	defer key.Destroy()

	info := infoOf(md)
	subj := fmt.Sprintf("%x", mac)
	// Everything Put may create, in the order cleanup removes it. Cleanup
	// deletes all of it, whether or not its write reported success: a
	// write cancelled mid-flight may still have landed (deletes are
	// idempotent).
	indexes := []string{expiryIndexKey(md.Expires, id), subjectIndexKey(mac, id)}
	cleanup := func() {
		// Detached from a possibly cancelled ctx: what is left is
		// unreadable (no key record) and Sweep collects it anyway.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = v.keys.Delete(cctx, keyRecordKey(id))
		for _, k := range append([]string{blobKey(id)}, indexes...) {
			_ = v.st.Delete(cctx, k)
		}
	}

	body := &bodyReader{r: br, declared: doc.Size, max: v.cfg.MaxSize}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	okRec := audit.Record{Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: info.ID, Subject: subj, Detail: ct}
	putRecord := func(ctx context.Context) error {
		return v.keys.Put(ctx, keyRecordKey(id), bytes.NewReader(record), int64(len(record)), store.PutOptions{IfAbsent: true})
	}
	// With the size known up front the key record is final before the
	// payload is, so it goes as soon as the index markers are durable,
	// with the audit record alongside, while the payload is still
	// uploading. Nothing is readable until the payload is there too, and
	// no one knows the ID before Put returns; a crash leaves a key record
	// that the expiry index (written before it) leads Sweep to.
	early := doc.Size >= 0
	var (
		wg                                 sync.WaitGroup
		payloadErr, indexErr, keyErr, aerr error
		written                            audit.Record
	)
	wg.Go(func() {
		if payloadErr = v.putPayload(pctx, id, key, body, doc.Size); payloadErr != nil {
			cancel()
		}
	})
	wg.Go(func() {
		if indexErr = v.putIndexes(pctx, indexes); indexErr != nil {
			cancel()
			return
		}
		if early {
			if keyErr = putRecord(pctx); keyErr != nil {
				cancel()
			}
		}
	})
	if early {
		// Not pctx: a record that is written must be known to be, so that
		// a failure can be followed by a refusal that supersedes it.
		wg.Go(func() { written, aerr = v.auditRecord(ctx, okRec) })
	}
	wg.Wait()
	audited := early && aerr == nil // an ok record exists: a failure must supersede it
	fail := func(err error) (Info, audit.Record, error) {
		cleanup()
		refusal := audit.Record{Event: audit.EventPut, Object: info.ID, Subject: subj}
		if audited {
			refusal.Detail = fmt.Sprintf("not stored: supersedes %s seq %d", written.Log, written.Seq)
		}
		return Info{}, refusal, err
	}
	if err := firstError(body.err, payloadErr, indexErr); err != nil {
		return fail(fmt.Errorf("vault: put: %w", err))
	}
	if keyErr != nil {
		return fail(fmt.Errorf("vault: put: key record: %w", keyErr))
	}
	if aerr != nil {
		return fail(aerr)
	}
	if early {
		return info, okRec, nil
	}

	// Size unknown until the body ended: seal the counted size, then write
	// the key record and the audit record together.
	md.Size = body.n
	info.Size = body.n
	if record, err = envelope.Reseal(ctx, v.kek, md, key); err != nil {
		return fail(fmt.Errorf("vault: put: seal: %w", err))
	}
	okRec.Object = info.ID
	wg.Go(func() { written, aerr = v.auditRecord(ctx, okRec) })
	keyErr = putRecord(ctx)
	wg.Wait()
	audited = aerr == nil
	if keyErr != nil {
		return fail(fmt.Errorf("vault: put: key record: %w", keyErr))
	}
	if aerr != nil {
		return fail(aerr)
	}
	return info, okRec, nil
}

// putIndexes writes the empty index markers, in parallel.
func (v *Vault) putIndexes(ctx context.Context, keys []string) error {
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { errs[i] = v.st.Put(ctx, k, bytes.NewReader(nil), 0, store.PutOptions{}) })
	}
	wg.Wait()
	return firstError(errs...)
}

// putPayload streams the body through encryption into blobs/<id>.
func (v *Vault) putPayload(ctx context.Context, id objectID, key *envelope.Key, body io.Reader, size int64) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc, err := key.Encrypt(pw)
		if err == nil {
			_, err = io.Copy(enc, body)
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	psize := int64(-1)
	if size >= 0 {
		psize = envelope.PayloadSize(size)
	}
	err := v.st.Put(ctx, blobKey(id), pr, psize, store.PutOptions{IfAbsent: true})
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
