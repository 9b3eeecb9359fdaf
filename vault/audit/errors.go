package audit

import "errors"

// Sentinel errors, matched with errors.Is. Messages never quote record
// fields, keys or signatures.
var (
	// ErrUnavailable: the log could not make a record durable. A caller that
	// is about to release data must stop (fail closed).
	ErrUnavailable = errors.New("audit: log unavailable")

	// ErrCorrupt: bytes that are not a well-formed record, batch or
	// checkpoint in the canonical encoding.
	ErrCorrupt = errors.New("audit: corrupt encoding")

	// ErrTampered: Verify found at least one problem; the Report says which
	// and where.
	ErrTampered = errors.New("audit: log tampered")

	// ErrInvalidRecord: a Record that cannot be encoded (a field too long,
	// not UTF-8, or a hex field that is not lower-case hex). Append refuses
	// it before anything is written.
	ErrInvalidRecord = errors.New("audit: invalid record")

	// ErrLogExists: NewAppender was given a LogID that already has objects
	// in the store. Each writer owns its log; two writers must never share one.
	ErrLogExists = errors.New("audit: log already exists")

	// ErrClosed: Append or Checkpoint after Close. It is also wrapped with
	// ErrUnavailable, so fail-closed callers need only test that.
	ErrClosed = errors.New("audit: appender closed")
)
