package audit

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Event names what happened. The constants are the events the vault writes;
// any lower-case token of up to MaxEventLen bytes of [a-z0-9-] is accepted,
// so that a newer writer's events still verify with an older reader.
type Event string

// The events the vault records.
const (
	EventPut     Event = "put"     // a document was stored
	EventGrant   Event = "grant"   // a single-use token was issued
	EventRedeem  Event = "redeem"  // a token was redeemed (plaintext released on OutcomeOK)
	EventDelete  Event = "delete"  // a document was deleted on request
	EventExpire  Event = "expire"  // a document was removed at its expiry
	EventErase   Event = "erase"   // every document of one subject was erased
	EventHold    Event = "hold"    // a legal hold was placed
	EventRelease Event = "release" // a legal hold was lifted
	EventRotate  Event = "rotate"  // a key was rotated
	EventAlert   Event = "alert"   // an abuse alert (quota, bulk access, canary)
	EventSweep   Event = "sweep"   // a sweep ran
	// EventOpen starts a writer's session. The appender itself writes one,
	// with Reason "continues", as the first record of a log that replaces a
	// log abandoned after a failed write (see Appender).
	EventOpen Event = "open"
)

// Outcome says whether the action was done.
type Outcome string

// The outcomes.
const (
	OutcomeOK      Outcome = "ok"      // done
	OutcomeRefused Outcome = "refused" // refused; Reason says why
	OutcomeError   Outcome = "error"   // failed; Reason says how
)

// Record is one audit event. It holds identifiers and labels only: never
// document content, a token, a key or a raw subject identifier. Hex fields
// (Object, TokenID, Subject) must be lower-case hex, which keeps a raw
// e-mail address or token out of them by construction.
type Record struct {
	Time       time.Time // when it happened; the appender sets it when zero
	Log        string    // set by the appender: the log this record belongs to
	Seq        int64     // set by the appender: 0-based, contiguous per log
	Event      Event     // required
	Outcome    Outcome   // required
	Reason     string    // precise refusal reason, e.g. "token-expired", "wrong-principal", "replayed"
	Object     string    // object ID, hex
	Principal  string    // who acted or was granted access
	Purpose    string    // why
	TokenID    string    // hex of the 128-bit token ID, never the token
	RemoteAddr string    // the requester's address
	Subject    string    // hex HMAC of the subject, never the raw subject
	Detail     string    // short free text with no secrets (e.g. "quota 200/h", counts)
}

// Field bounds, in bytes. MarshalBinary and Append refuse longer values with
// ErrInvalidRecord; the vault clips untrusted labels to them before
// appending.
const (
	MaxLogLen     = 64   // [A-Za-z0-9._-], not starting with '.' or '_'
	MaxEventLen   = 32   // [a-z0-9-]
	MaxOutcomeLen = 16   // [a-z0-9-]
	MaxReasonLen  = 64   // [a-z0-9-]
	MaxHexLen     = 128  // Object, TokenID, Subject: [0-9a-f]
	MaxTextLen    = 256  // Principal, Purpose, RemoteAddr: any UTF-8
	MaxDetailLen  = 1024 // Detail: any UTF-8
)

const recordVersion = 1

// The encodable times: years 1 to 9999 (the zero time.Time included).
const (
	minUnix = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

type fieldKind uint8

const (
	kindLog fieldKind = iota
	kindToken
	kindHex
	kindText
)

type fieldSpec struct {
	name     string
	max      int
	kind     fieldKind
	required bool
}

// fields lists the string fields in encoding order; fieldPtrs must match it.
var fields = [...]fieldSpec{
	{"log", MaxLogLen, kindLog, true},
	{"event", MaxEventLen, kindToken, true},
	{"outcome", MaxOutcomeLen, kindToken, true},
	{"reason", MaxReasonLen, kindToken, false},
	{"object", MaxHexLen, kindHex, false},
	{"principal", MaxTextLen, kindText, false},
	{"purpose", MaxTextLen, kindText, false},
	{"token-id", MaxHexLen, kindHex, false},
	{"remote-addr", MaxTextLen, kindText, false},
	{"subject", MaxHexLen, kindHex, false},
	{"detail", MaxDetailLen, kindText, false},
}

// recordFixedLen is version, seconds, nanoseconds and seq.
const recordFixedLen = 1 + 8 + 4 + 8

// maxRecordLen bounds an encoded record; readers refuse anything longer
// before allocating for it.
const maxRecordLen = recordFixedLen + 2*len(fields) +
	MaxLogLen + MaxEventLen + MaxOutcomeLen + MaxReasonLen + 3*MaxHexLen + 3*MaxTextLen + MaxDetailLen

func (r *Record) fieldPtrs() [len(fields)]*string {
	return [...]*string{
		&r.Log, (*string)(&r.Event), (*string)(&r.Outcome), &r.Reason, &r.Object,
		&r.Principal, &r.Purpose, &r.TokenID, &r.RemoteAddr, &r.Subject, &r.Detail,
	}
}

// validField reports whether s is acceptable for spec; the error names the
// field, never its value.
func validField(spec fieldSpec, s string) error {
	if s == "" {
		if spec.required {
			return fmt.Errorf("%s is required", spec.name)
		}
		return nil
	}
	if len(s) > spec.max {
		return fmt.Errorf("%s longer than %d bytes", spec.name, spec.max)
	}
	switch spec.kind {
	case kindLog:
		if !ValidLogID(s) {
			return fmt.Errorf("%s is not a valid log ID", spec.name)
		}
	case kindToken:
		for i := 0; i < len(s); i++ {
			if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%s is not a token of [a-z0-9-]", spec.name)
			}
		}
	case kindHex:
		for i := 0; i < len(s); i++ {
			if c := s[i]; !('a' <= c && c <= 'f' || '0' <= c && c <= '9') {
				return fmt.Errorf("%s is not lower-case hex", spec.name)
			}
		}
	case kindText:
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s is not valid UTF-8", spec.name)
		}
	}
	return nil
}

// ValidLogID reports whether id can name a log: 1 to MaxLogLen bytes of
// [A-Za-z0-9._-], not starting with '.' (one storage key segment) or '_'
// (reserved for the registry and the leases under audit/).
func ValidLogID(id string) bool {
	if id == "" || len(id) > MaxLogLen || id[0] == '.' || id[0] == '_' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validate checks every field of r; the error wraps ErrInvalidRecord.
func (r *Record) validate() error {
	if s := r.Time.Unix(); s < minUnix || s > maxUnix {
		return fmt.Errorf("%w: time outside years 1-9999", ErrInvalidRecord)
	}
	if r.Seq < 0 {
		return fmt.Errorf("%w: negative seq", ErrInvalidRecord)
	}
	ptrs := r.fieldPtrs()
	for i, spec := range fields {
		if err := validField(spec, *ptrs[i]); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		}
	}
	return nil
}

// MarshalBinary returns the canonical encoding of r (format version 1):
//
//	version   1 byte (1)
//	seconds   int64, big-endian, Unix time
//	nanos     uint32, big-endian, < 1e9
//	seq       uint64, big-endian, < 2^63
//	11 fields uint16 big-endian length + bytes, in the order Log, Event,
//	          Outcome, Reason, Object, Principal, Purpose, TokenID,
//	          RemoteAddr, Subject, Detail
//
// The time is stored in UTC (its location and monotonic reading are
// dropped). Every field is bounded (see the Max constants); Log, Event and
// Outcome are required. The error wraps ErrInvalidRecord.
func (r Record) MarshalBinary() ([]byte, error) {
	return r.appendBinary(make([]byte, 0, r.encodedLen()))
}

func (r *Record) encodedLen() int {
	n := recordFixedLen + 2*len(fields)
	for _, p := range r.fieldPtrs() {
		n += len(*p)
	}
	return n
}

func (r *Record) appendBinary(b []byte) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Time.Nanosecond()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	for _, p := range r.fieldPtrs() {
		b = binary.BigEndian.AppendUint16(b, uint16(len(*p)))
		b = append(b, *p...)
	}
	return b, nil
}

// ParseRecord decodes a record encoded by MarshalBinary. It is strict: it
// accepts exactly the canonical encodings (so MarshalBinary of its result
// gives back b) and refuses anything else with an error wrapping ErrCorrupt.
// It never panics and allocates only the fields it returns.
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if err := parseRecordInto(&r, b); err != nil {
		return Record{}, err
	}
	return r, nil
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func parseRecordInto(r *Record, b []byte) error {
	if len(b) > maxRecordLen {
		return corruptf("record longer than %d bytes", maxRecordLen)
	}
	if len(b) < recordFixedLen+2*len(fields) {
		return corruptf("record too short")
	}
	if b[0] != recordVersion {
		return corruptf("unknown record version")
	}
	sec := int64(binary.BigEndian.Uint64(b[1:]))
	nsec := binary.BigEndian.Uint32(b[9:])
	seq := binary.BigEndian.Uint64(b[13:])
	if sec < minUnix || sec > maxUnix {
		return corruptf("record time out of range")
	}
	if nsec >= 1e9 {
		return corruptf("record nanoseconds out of range")
	}
	if seq >= 1<<63 {
		return corruptf("record seq out of range")
	}
	r.Time = time.Unix(sec, int64(nsec)).UTC()
	r.Seq = int64(seq)
	b = b[recordFixedLen:]
	for i, p := range r.fieldPtrs() {
		if len(b) < 2 {
			return corruptf("record truncated in field %d", i)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			return corruptf("record truncated in field %d", i)
		}
		s := string(b[:n])
		if err := validField(fields[i], s); err != nil {
			return corruptf("%v", err)
		}
		*p = s
		b = b[n:]
	}
	if len(b) != 0 {
		return corruptf("trailing bytes after record")
	}
	return nil
}
