package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault/store"
)

// PartSize is the part size of the multipart uploads used for bodies of
// unknown size, and so the memory one such Put holds. It is S3's minimum
// part size.
const PartSize = 5 << 20

// maxParts is S3's limit on the parts of one multipart upload.
const maxParts = 10000

// abortTimeout bounds the cleanup of a failed multipart upload, which runs
// in the background, even when the caller's context is already cancelled.
const abortTimeout = 30 * time.Second

var partPool = sync.Pool{New: func() any { b := make([]byte, PartSize); return &b }}

// Put implements store.Store:
//
//   - IfAbsent is a conditional PUT (If-None-Match: *), decided atomically by
//     the server; a lost race fails with store.ErrExists.
//   - RetainUntil needs an object-lock bucket (else store.ErrRetentionUnsupported,
//     nothing written) and locks the object in COMPLIANCE mode.
//   - Without IfAbsent, on an object-lock bucket, Put first checks the current
//     object and fails with store.ErrRetained while it is retained, because
//     S3 would silently stack a new version on top of it.
//   - size -1 streams the body in parts of PartSize.
//   - Expirable writes the object with the tag ExpiryTag=yes, which the
//     rule of SetExpiryRule requires; otherwise the object has no tags.
//
// See the package documentation for the details and the one race left.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("s3store: put: negative size: %w", store.ErrSizeMismatch)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3store: put: %w", err)
	}
	po := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true}
	if opts.Expirable {
		// In the PUT (or the multipart initiation) itself: an object
		// never exists without its mark.
		po.UserTags = map[string]string{ExpiryTag: expiryTagYes}
	}
	if !opts.RetainUntil.IsZero() {
		if !s.locked {
			return fmt.Errorf("s3store: put: bucket has no object lock: %w", store.ErrRetentionUnsupported)
		}
		// A date already past retains nothing (as in every backend);
		// S3 would refuse it.
		if until := ceilSecond(opts.RetainUntil); until.After(time.Now()) {
			po.Mode = minio.Compliance
			po.RetainUntilDate = until
		}
	}
	name := s.name(key)
	if opts.IfAbsent {
		po.SetMatchETagExcept("*")
	} else if s.locked {
		// S3 would stack a new version on a retained one; refuse instead.
		if err := s.checkNotRetained(ctx, "put", name, ""); err != nil {
			return err
		}
	}
	if size >= 0 {
		return s.putKnown(ctx, name, body, size, po)
	}
	return s.putUnknown(ctx, name, body, po, opts.IfAbsent)
}

// ceilSecond rounds t up to a whole second: the retention header carries
// seconds, and truncating would release the object early.
func ceilSecond(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r
}

func (s *Store) putKnown(ctx context.Context, name string, body io.Reader, size int64, po minio.PutObjectOptions) error {
	sr := &sizeReader{r: body, left: size}
	var r io.Reader = sr
	if size == 0 {
		// The HTTP client never reads an empty body, so check here that it
		// really is empty.
		if sr.extra() {
			return sr.failure()
		}
		r = bytes.NewReader(nil)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sr.stop = cancel
	_, err := s.client.PutObject(pctx, s.bucket, name, r, size, po)
	if err != nil {
		if ferr := sr.failure(); ferr != nil {
			return ferr
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3store: put: %w", cerr)
		}
		return mapErr("put", err)
	}
	return nil
}

// putUnknown uploads a body of unknown size with at most one part in
// memory: a body that fits in one part is a single PUT, a longer one a
// multipart upload.
func (s *Store) putUnknown(ctx context.Context, name string, body io.Reader, po minio.PutObjectOptions, ifAbsent bool) error {
	bp := partPool.Get().(*[]byte)
	defer partPool.Put(bp)
	buf := *bp
	n, err := io.ReadFull(body, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return s.putKnown(ctx, name, bytes.NewReader(buf[:n]), int64(n), po)
	case err != nil:
		return fmt.Errorf("s3store: put: reading body: %w", err)
	}
	return s.putMultipart(ctx, name, body, buf, po, ifAbsent)
}

// putMultipart uploads buf (a full first part) and the rest of body as a
// multipart upload. With ifAbsent the completion carries If-None-Match too,
// so the server decides existence atomically at commit time, not only when
// the upload began.
func (s *Store) putMultipart(ctx context.Context, name string, body io.Reader, buf []byte, po minio.PutObjectOptions, ifAbsent bool) (err error) {
	po.DisableMultipart = false
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, name, po)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3store: put: %w", cerr)
		}
		return mapErr("put", err)
	}
	defer func() {
		if err != nil {
			// Within the caller's context while it lasts; otherwise in the
			// background, so that the caller's deadline holds even when the
			// server is gone (minio-go would retry the abort for seconds).
			// An upload no abort reaches is left to the bucket's lifecycle
			// rule (see SetExpiryRule).
			if ctx.Err() == nil && s.core.AbortMultipartUpload(ctx, s.bucket, name, uploadID) == nil {
				return
			}
			go func() {
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
				defer cancel()
				_ = s.core.AbortMultipartUpload(actx, s.bucket, name, uploadID)
			}()
		}
	}()
	var parts []minio.CompletePart
	n := len(buf)
	for num := 1; ; num++ {
		if num > maxParts {
			return fmt.Errorf("s3store: put: body longer than %d parts of %d bytes", maxParts, PartSize)
		}
		p, err := s.core.PutObjectPart(ctx, s.bucket, name, uploadID, num, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("s3store: put: %w", cerr)
			}
			return mapErr("put part", err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: num, ETag: p.ETag})
		if n < len(buf) {
			break // that was the short last part
		}
		var rerr error
		n, rerr = io.ReadFull(body, buf)
		if rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			return fmt.Errorf("s3store: put: reading body: %w", rerr)
		}
	}
	var co minio.PutObjectOptions
	if ifAbsent {
		co.SetMatchETagExcept("*")
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, name, uploadID, parts, co); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3store: put: %w", cerr)
		}
		return mapErr("put", err)
	}
	return nil
}

// sizeReader passes through exactly left bytes of r and fails the upload if
// r holds more or fewer. It checks for surplus bytes before it releases the
// last expected ones, so the HTTP client (which stops reading at the
// declared Content-Length) can never complete a request whose body was
// longer than declared.
type sizeReader struct {
	r        io.Reader
	left     int64
	mismatch bool
	err      error  // r's own error
	stop     func() // if set, called once the body has failed
}

// maxEmptyReads bounds the reads that return (0, nil) before a body is
// treated as broken, as io.Copy-style loops do.
const maxEmptyReads = 100

var errNoProgress = errors.New("s3store: body returned no data and no error repeatedly")

// Read passes the body through; once the body has failed it calls stop,
// which cancels the request: the HTTP client would otherwise retry a body
// that can only fail again (minio-go v7.1.0 backs off for seconds).
func (s *sizeReader) Read(p []byte) (int, error) {
	n, err := s.read(p)
	if s.stop != nil && (s.mismatch || s.err != nil) {
		s.stop()
	}
	return n, err
}

func (s *sizeReader) read(p []byte) (int, error) {
	if f := s.failure(); f != nil {
		return 0, f
	}
	if s.left == 0 {
		if s.extra() {
			return 0, s.failure()
		}
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	switch {
	case err == io.EOF:
		if s.left > 0 {
			s.mismatch = true
			return 0, s.failure()
		}
		return n, io.EOF
	case err != nil:
		s.err = err
		return 0, s.failure()
	case s.left == 0:
		if s.extra() {
			return 0, s.failure()
		}
		return n, io.EOF
	}
	return n, nil
}

// extra reports whether r still yields data (a mismatch) or fails; it
// records which.
func (s *sizeReader) extra() bool {
	var b [1]byte
	for range maxEmptyReads {
		n, err := s.r.Read(b[:])
		if n > 0 {
			s.mismatch = true
			return true
		}
		if err == io.EOF {
			return false
		}
		if err != nil {
			s.err = err
			return true
		}
	}
	s.err = errNoProgress
	return true
}

// failure is the error that stopped the body, or nil.
func (s *sizeReader) failure() error {
	switch {
	case s.mismatch:
		return fmt.Errorf("s3store: put: %w", store.ErrSizeMismatch)
	case s.err != nil:
		return fmt.Errorf("s3store: put: reading body: %w", s.err)
	}
	return nil
}
