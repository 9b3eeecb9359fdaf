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
// The payload and the index markers are written first (in parallel), the key
// record last: until the key record exists nothing is readable, and a
// failure at any step leaves only garbage that Sweep recognises and removes.
func (v *Vault) Put(ctx context.Context, doc Document) (Info, error) {
	if v.isClosed() {
		return Info{}, ErrClosed
	}
	info, subj, err := v.put(ctx, doc, false)
	rec := audit.Record{Event: audit.EventPut, Object: info.ID, Subject: subj}
	if err != nil {
		if !errors.Is(err, ErrAuditUnavailable) {
			rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
			_ = v.audit(ctx, rec)
		}
		return Info{}, err
	}
	return info, nil
}

func (v *Vault) put(ctx context.Context, doc Document, canary bool) (Info, string, error) {
	if doc.Body == nil {
		return Info{}, "", fmt.Errorf("vault: put: nil body: %w", ErrInvalidArgument)
	}
	if doc.Subject == "" {
		return Info{}, "", fmt.Errorf("vault: put: subject required: %w", ErrInvalidArgument)
	}
	if len(doc.Kind) > 64 {
		return Info{}, "", fmt.Errorf("vault: put: kind over 64 bytes: %w", ErrInvalidArgument)
	}
	retention := v.cfg.Retention
	if doc.Retention != 0 {
		if doc.Retention < 0 || doc.Retention > v.cfg.MaxRetention {
			return Info{}, "", fmt.Errorf("vault: put: retention outside (0, MaxRetention]: %w", ErrInvalidArgument)
		}
		retention = doc.Retention
	}
	if doc.Size > v.cfg.MaxSize {
		return Info{}, "", fmt.Errorf("vault: put: declared size over the %d-byte limit: %w", v.cfg.MaxSize, ErrTooLarge)
	}
	if doc.Size < -1 {
		return Info{}, "", fmt.Errorf("vault: put: negative size: %w", ErrInvalidArgument)
	}
	declared := normalizeType(doc.ContentType)

	br := bufio.NewReaderSize(doc.Body, 512)
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return Info{}, "", fmt.Errorf("vault: put: read body: %w", err)
	}
	ct := sniff(head)
	if ct == "" || !typeMatches(declared, ct) {
		return Info{}, "", fmt.Errorf("vault: put: %w", ErrUnsupportedContent)
	}

	sys, _ := v.keyset()
	id, err := newObjectID()
	if err != nil {
		return Info{}, "", err
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
		return Info{}, "", fmt.Errorf("vault: put: seal: %w", err)
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

	// Phase 1, in parallel: the payload and the index markers.
	body := &bodyReader{r: br, declared: doc.Size, max: v.cfg.MaxSize}
	var wg sync.WaitGroup
	errs := make([]error, 1+len(indexes))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1 + len(indexes))
	go func() {
		defer wg.Done()
		if errs[0] = v.putPayload(pctx, id, key, body, doc.Size); errs[0] != nil {
			cancel()
		}
	}()
	for i, k := range indexes {
		go func() {
			defer wg.Done()
			if errs[i+1] = v.st.Put(pctx, k, bytes.NewReader(nil), 0, store.PutOptions{}); errs[i+1] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := firstError(append([]error{body.err}, errs...)...); err != nil {
		cleanup()
		return Info{}, subj, fmt.Errorf("vault: put: %w", err)
	}
	if doc.Size < 0 {
		md.Size = body.n
		info.Size = body.n
		if record, err = envelope.Reseal(ctx, v.kek, md, key); err != nil {
			cleanup()
			return Info{}, subj, fmt.Errorf("vault: put: seal: %w", err)
		}
	}

	// Phase 2, in parallel: the audit record and the key record (the
	// commit point). If either fails the key record is removed again.
	var aerr, kerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		aerr = v.audit(ctx, audit.Record{Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: info.ID, Subject: subj, Detail: ct})
	}()
	kerr = v.keys.Put(ctx, keyRecordKey(id), bytes.NewReader(record), int64(len(record)), store.PutOptions{IfAbsent: true})
	wg.Wait()
	if aerr != nil || kerr != nil {
		cleanup()
		if aerr != nil {
			return Info{}, subj, aerr
		}
		return Info{}, subj, fmt.Errorf("vault: put: key record: %w", kerr)
	}
	return info, subj, nil
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
