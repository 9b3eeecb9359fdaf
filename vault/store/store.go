// Package store defines the storage contract that every idvault backend
// implements: four methods over opaque byte objects named by keys.
//
// It is a leaf package: the vault, its audit log and every backend import it,
// and it imports none of them. The same contract tests (package
// vault/storetest) run against every implementation.
package store

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// Sentinel errors. Implementations wrap them (fmt.Errorf("...: %w", ErrX))
// and callers match them with errors.Is.
var (
	// ErrNotFound: Get of a key that does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: Put with IfAbsent of a key that already exists.
	ErrExists = errors.New("store: already exists")
	// ErrInvalidKey: a key (or List prefix) outside the documented alphabet.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrRetained: Delete or overwrite of a key before its RetainUntil date.
	ErrRetained = errors.New("store: object is under retention")
	// ErrSizeMismatch: the body of a Put yielded more or fewer bytes than
	// the size it was declared with. Nothing is stored.
	ErrSizeMismatch = errors.New("store: body size does not match declared size")
	// ErrRetentionUnsupported: Put with RetainUntil on a store (or bucket)
	// that cannot make objects write-once.
	ErrRetentionUnsupported = errors.New("store: retention (object lock) not supported")
)

// MaxKeyLen is the longest key a Store accepts, in bytes.
const MaxKeyLen = 512

// PutOptions are per-call options of Put. The zero value is an ordinary
// unconditional, deletable write.
type PutOptions struct {
	// IfAbsent makes Put create-only: if the key already exists Put fails
	// with an error wrapping ErrExists and the existing object is unchanged.
	// The check and the write are one atomic step across goroutines,
	// processes and machines sharing the store: of any number of concurrent
	// IfAbsent writers of one key, exactly one succeeds.
	IfAbsent bool

	// RetainUntil, when non-zero, makes the object write-once until that
	// time: Delete and overwriting Puts fail with ErrRetained before it.
	// On S3 this is object lock in compliance mode; a filesystem can only
	// enforce it against callers that go through the Store (best effort).
	RetainUntil time.Time

	// Expirable marks the object as one the store's own expiry may delete
	// (the S3 lifecycle backstop of vault payloads), in the same write that
	// creates it; ExpiryTagger changes the mark later. Stores without an
	// expiry of their own (a filesystem) ignore it. The zero value leaves
	// the object outside that expiry.
	Expirable bool
}

// ExpiryTagger is implemented by a Store that can delete objects on its own
// schedule (on S3, a lifecycle rule that matches only objects marked
// expirable) and lets that mark be changed per object. The vault uses it to
// take a document under legal hold out of the store's expiry, and to put it
// back on Release. It is optional: a Store without an expiry of its own
// does not implement it. A Store that wraps one that does must implement it
// too and pass the call on: otherwise the vault cannot take a held payload
// out of the inner store's expiry.
type ExpiryTagger interface {
	// SetExpirable marks the object under key as expirable by the store's
	// own expiry (true) or not (false). It is idempotent: setting the mark
	// an object already has succeeds and changes nothing. It returns an
	// error wrapping ErrNotFound when the key is absent, and never changes
	// the object's content, retention or other state the vault relies on.
	SetExpirable(ctx context.Context, key string, expirable bool) error
}

// Clock is implemented by a Store that can tell the time as the storage
// itself sees it: on S3 the Date of the server's answers, on a filesystem
// the modification time it gives a file it creates. The vault compares its
// own clock with it before anything irreversible (spending a token,
// shredding, collecting the single-use ledger, taking over an audit log),
// and refuses while the two disagree by more than its leeway: a vault
// instance whose clock is hours off must not decide deadlines by it. It is
// optional; a Store that wraps one that implements it must implement it
// too and pass the call on.
type Clock interface {
	// Time returns the storage's current time. It may answer from a
	// reading at most a second or two old (adding the time elapsed since
	// on the local monotonic clock), so callers allow for that much
	// resolution. An error means the time could not be read; callers treat
	// it as a disagreement (refuse), never as agreement.
	Time(ctx context.Context) (time.Time, error)
}

// HiddenReader is implemented by a Store that keeps object versions (an S3
// bucket with versioning or object lock), where a delete without a version
// ID does not remove an object but hides it behind a delete marker: a
// reader of current objects no longer sees it, though its bytes (and, under
// object lock, its retention) remain. The vault reads through such markers
// where losing sight of an object would roll back what must not be rolled
// back (the state chain, the audit logs), and raises an alert. Optional; a
// Store that wraps one that implements it must pass it on.
type HiddenReader interface {
	// Hidden yields, in lexical order, the keys under prefix whose newest
	// version is a delete marker while an older version holds data.
	Hidden(ctx context.Context, prefix string) iter.Seq2[string, error]
	// GetHidden opens the newest version of key that holds data, whether
	// or not a delete marker hides it; an error wrapping ErrNotFound when
	// there is none.
	GetHidden(ctx context.Context, key string) (io.ReadCloser, error)
}

// Store is a flat namespace of immutable byte objects.
//
// Keys are 1 to MaxKeyLen bytes of [A-Za-z0-9._-] in segments separated by
// single '/'; no segment is empty, "." or "..", or starts with '.'; no key
// starts or ends with '/'. Any other key is refused with ErrInvalidKey (see
// ValidKey), so no key can escape a backend's namespace.
//
// Implementations are safe for concurrent use by multiple goroutines.
type Store interface {
	// Put stores exactly size bytes read from body under key, atomically:
	// readers see the old object (or none) until Put returns nil, then the
	// whole new one. size is the exact body length, or -1 when unknown.
	// If body fails, yields a different number of bytes than size, or ctx
	// is cancelled, Put returns an error and leaves no object (and no
	// partial object) under key.
	Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error

	// Get opens the object stored under key. It returns an error wrapping
	// ErrNotFound when the key is absent. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// Delete removes the object under key. Deleting an absent key is not an
	// error (Delete is idempotent). It fails with ErrRetained before the
	// object's RetainUntil date.
	Delete(ctx context.Context, key string) error

	// List yields the keys that start with prefix, in lexical (byte) order,
	// fetching them lazily. prefix is "" or a key prefix in the key
	// alphabet. An error ends the sequence after it is yielded.
	List(ctx context.Context, prefix string) iter.Seq2[string, error]
}

// ValidKey reports whether key is in the documented key alphabet; the error
// wraps ErrInvalidKey and does not quote the key.
func ValidKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return errors.Join(ErrInvalidKey, errors.New("key length out of range"))
	}
	segStart := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return errors.Join(ErrInvalidKey, errors.New("key has a byte outside [A-Za-z0-9._-/]"))
			}
			continue
		}
		seg := key[segStart:i]
		if seg == "" {
			return errors.Join(ErrInvalidKey, errors.New("key has an empty segment"))
		}
		if seg[0] == '.' {
			return errors.Join(ErrInvalidKey, errors.New("key segment starts with '.'"))
		}
		segStart = i + 1
	}
	return nil
}

// ValidPrefix reports whether prefix may be passed to List: "" or a string
// in the key alphabet that is a valid key, or a valid key followed by '/',
// or the beginning of one.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return errors.Join(ErrInvalidKey, errors.New("prefix too long"))
	}
	p := prefix
	if p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	// A partial last segment like "ab" (of "abc") is fine, and so is a
	// trailing '/'; what remains must be key-shaped.
	if p == "" {
		return errors.Join(ErrInvalidKey, errors.New("prefix is a lone '/'"))
	}
	return ValidKey(p)
}

func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}
