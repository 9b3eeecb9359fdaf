package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/vault/store"
)

// The state chain: the vault's decisions that must never be rolled back.
//
// A legal hold and its release, and the freeze of a principal and its
// lifting, decide what may be served and what may be destroyed, for as long
// as the document or the principal exists. Each such change is one entry of
// a single hash-linked chain shared by every instance of a vault:
//
//	audit/_state/<seq, 20 digits>   create-only, write-once with retention
//
// whose body is a note signed with the audit key, with text exactly:
//
//	idvault state v1
//	<seq, decimal, from 1>
//	<prev: base64 SHA-256 of entry seq-1 exactly as stored, or "-" for seq 1>
//	<time, RFC 3339 with nanoseconds, UTC>
//	<kind> <target>
//
// kind is hold or release (target: the object ID, 32 lower-case hex
// digits) or freeze or unfreeze (target: the keyed hash of the principal,
// 64 lower-case hex digits).
//
// Writers take the next sequence number with a create-only write, so
// concurrent writers are ordered by the store, and each entry names the
// exact bytes of the one before it, so no entry can be removed from the
// middle, replaced or reordered without breaking the chain for every
// reader. Removing the newest entries (a backup restored, a delete marker
// on a locked bucket) is what the chain alone cannot show: the vault writes
// the chain's head into its audit logs (EventWitness records, see
// FormatStateHead), so a chain shorter than a head any log vouches for is a
// rollback (Verify reports it), and a running instance never forgets what
// it has read.
const (
	StatePrefix      = auditPrefix + "_state/"
	stateHeader      = "idvault state v1"
	maxStateEntryLen = 1024
)

// StateKind names what a state entry changes.
type StateKind string

// The state kinds.
const (
	StateHold     StateKind = "hold"     // a legal hold placed on the object Target
	StateRelease  StateKind = "release"  // the legal hold on the object Target lifted
	StateFreeze   StateKind = "freeze"   // the principal whose keyed hash is Target frozen after an alert
	StateUnfreeze StateKind = "unfreeze" // that principal's freeze lifted
)

// targetLen is the length of a kind's Target in hex digits.
func (k StateKind) targetLen() int {
	switch k {
	case StateHold, StateRelease:
		return 32
	case StateFreeze, StateUnfreeze:
		return 64
	}
	return 0
}

// StateEntry is one entry of the state chain.
type StateEntry struct {
	Seq    int64     // 1, 2, …: position in the chain
	Prev   StateHash // hash of entry Seq-1 as stored; zero for Seq 1
	Time   time.Time // when the writer made the change (its clock)
	Kind   StateKind
	Target string // object ID or principal hash, lower-case hex (see StateKind)
}

// StateHash is the SHA-256 of a state entry exactly as stored.
type StateHash [sha256.Size]byte

// HashState returns the hash a following entry must name as Prev.
func HashState(stored []byte) StateHash { return sha256.Sum256(stored) }

// String is the hash in standard base64.
func (h StateHash) String() string { return base64.StdEncoding.EncodeToString(h[:]) }

// StateKey names the entry with sequence number seq.
func StateKey(seq int64) string { return fmt.Sprintf("%s%020d", StatePrefix, seq) }

// ParseStateKey returns the sequence number a StateKey names.
func ParseStateKey(key string) (int64, bool) {
	name, ok := strings.CutPrefix(key, StatePrefix)
	if !ok {
		return 0, false
	}
	seq, ok := parseSeqName(name)
	return seq, ok && seq >= 1
}

func (e *StateEntry) check() error {
	if e.Seq < 1 {
		return fmt.Errorf("%w: state entry seq must be at least 1", ErrInvalidRecord)
	}
	if e.Seq == 1 && e.Prev != (StateHash{}) {
		return fmt.Errorf("%w: the first state entry has no previous entry", ErrInvalidRecord)
	}
	n := e.Kind.targetLen()
	if n == 0 {
		return fmt.Errorf("%w: unknown state kind", ErrInvalidRecord)
	}
	if len(e.Target) != n || !isLowerHex(e.Target) {
		return fmt.Errorf("%w: state target must be %d lower-case hex digits", ErrInvalidRecord, n)
	}
	if s := e.Time.Unix(); s < minUnix || s > maxUnix {
		return fmt.Errorf("%w: state entry time outside years 1-9999", ErrInvalidRecord)
	}
	return nil
}

func (e *StateEntry) text() string {
	prev := "-"
	if e.Seq > 1 {
		prev = e.Prev.String()
	}
	return stateHeader + "\n" + strconv.FormatInt(e.Seq, 10) + "\n" + prev + "\n" +
		e.Time.UTC().Format(time.RFC3339Nano) + "\n" + string(e.Kind) + " " + e.Target + "\n"
}

// StateSigner signs state entries with the audit signing key.
type StateSigner struct{ s note.Signer }

// NewStateSigner returns a StateSigner for signerKey (from GenerateKey).
func NewStateSigner(signerKey string) (*StateSigner, error) {
	return newSigner[StateSigner](signerKey)
}

// String redacts: a StateSigner holds a private key.
func (*StateSigner) String() string { return "audit.StateSigner{REDACTED}" }

// Sign validates e and returns the bytes to store under StateKey(e.Seq).
func (ss *StateSigner) Sign(e StateEntry) ([]byte, error) { return signEntry(ss.s, &e) }

func (e *StateEntry) noteText() (string, error) { return e.text(), nil }

// OpenStateEntry checks a stored state entry against verifierKey and
// returns it. Every failure wraps ErrCorrupt. It does not check the link
// to the previous entry: compare Prev with HashState of that entry.
func OpenStateEntry(b []byte, verifierKey string) (StateEntry, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return StateEntry{}, err
	}
	return openStateEntry(b, known)
}

func openStateEntry(b []byte, known note.Verifiers) (StateEntry, error) {
	text, err := openShortNote(b, known, "state entry", maxStateEntryLen)
	if err != nil {
		return StateEntry{}, err
	}
	return parseStateText(text)
}

// parseStateText parses the (verified) text of a state entry, accepting
// only what text produces.
func parseStateText(text string) (StateEntry, error) {
	if !strings.HasSuffix(text, "\n") {
		return StateEntry{}, corruptf("state entry does not end in newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 5 || lines[0] != stateHeader {
		return StateEntry{}, corruptf("not an idvault state entry")
	}
	var e StateEntry
	seq, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || seq < 1 || strconv.FormatInt(seq, 10) != lines[1] {
		return StateEntry{}, corruptf("state entry seq malformed")
	}
	e.Seq = seq
	switch {
	case seq == 1 && lines[2] == "-":
	case seq > 1:
		h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
		if err != nil || len(h) != len(e.Prev) || base64.StdEncoding.EncodeToString(h) != lines[2] {
			return StateEntry{}, corruptf("state entry prev hash malformed")
		}
		copy(e.Prev[:], h)
	default:
		return StateEntry{}, corruptf("state entry prev hash malformed")
	}
	t, err := time.Parse(time.RFC3339Nano, lines[3])
	if err != nil || t.UTC().Format(time.RFC3339Nano) != lines[3] {
		return StateEntry{}, corruptf("state entry time malformed")
	}
	e.Time = t.UTC()
	kind, target, ok := strings.Cut(lines[4], " ")
	if !ok {
		return StateEntry{}, corruptf("state entry change malformed")
	}
	e.Kind, e.Target = StateKind(kind), target
	if err := e.check(); err != nil {
		return StateEntry{}, corruptf("state entry change malformed")
	}
	return e, nil
}

// ErrStateBroken: the state chain is not one unbroken, validly signed
// sequence (an entry missing while a later one exists, an entry that does
// not name its predecessor's bytes, a bad signature, an entry stored under
// another number). A reader cannot establish the state from it: the vault
// treats every decision that depends on it as in doubt.
var ErrStateBroken = errors.New("audit: state chain broken")

// StateReader reads the state chain in order and then follows it. It keeps
// only the position and the hash of the last entry read. It is not safe
// for concurrent use.
type StateReader struct {
	st    store.Store
	known note.Verifiers
	next  int64     // the next seq to read
	prev  StateHash // hash of entry next-1
}

// NewStateReader returns a reader at the start of the chain in st, checking
// signatures with verifierKey.
func NewStateReader(st store.Store, verifierKey string) (*StateReader, error) {
	known, err := parseVerifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	return &StateReader{st: st, known: known, next: 1}, nil
}

// Len returns how many entries were read; Head the hash of the last one
// (zero before any).
func (r *StateReader) Len() int64      { return r.next - 1 }
func (r *StateReader) Head() StateHash { return r.prev }

// Next reads the entries that follow the last one read, calling fn with
// each (its stored bytes too), until the first absent one. It returns how
// many it read. An entry that does not verify or does not link returns an
// error wrapping ErrStateBroken, and the reader stays before it; a store
// error is returned as it is (the reader stays before the entry it could
// not read). Next does not detect a gap after the last entry present (an
// entry deleted while later ones exist): CheckGap does, with a listing.
func (r *StateReader) Next(ctx context.Context, fn func(e StateEntry, stored []byte) error) (int, error) {
	n := 0
	for {
		b, err := readSmall(ctx, r.st, StateKey(r.next), maxStateEntryLen)
		if errors.Is(err, store.ErrNotFound) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		e, err := r.check(b)
		if err != nil {
			return n, err
		}
		if fn != nil {
			if err := fn(e, b); err != nil {
				return n, err
			}
		}
		r.next, r.prev = e.Seq+1, HashState(b)
		n++
	}
}

// Accept checks b, the stored bytes of the entry that follows the last one
// read (one this process just wrote, say), and advances past it.
func (r *StateReader) Accept(b []byte) (StateEntry, error) {
	e, err := r.check(b)
	if err != nil {
		return e, err
	}
	r.next, r.prev = e.Seq+1, HashState(b)
	return e, nil
}

func (r *StateReader) check(b []byte) (StateEntry, error) {
	e, err := openStateEntry(b, r.known)
	if err != nil {
		return e, fmt.Errorf("%w: entry %d: %w", ErrStateBroken, r.next, err)
	}
	if e.Seq != r.next {
		return e, fmt.Errorf("%w: entry %d is stored as %d", ErrStateBroken, e.Seq, r.next)
	}
	if e.Prev != r.prev {
		return e, fmt.Errorf("%w: entry %d does not follow entry %d", ErrStateBroken, e.Seq, e.Seq-1)
	}
	return e, nil
}

// CheckGap lists the chain and returns an error wrapping ErrStateBroken if
// an entry exists past the reader's position, or a name under StatePrefix
// is not an entry name: the entry at the reader's position was deleted
// while later ones remain (or something else was put there).
func (r *StateReader) CheckGap(ctx context.Context) error {
	for k, err := range r.st.List(ctx, StatePrefix) {
		if err != nil {
			return err
		}
		seq, ok := ParseStateKey(k)
		if !ok {
			return fmt.Errorf("%w: unexpected object in the state chain", ErrStateBroken)
		}
		if seq >= r.next {
			return fmt.Errorf("%w: entry %d is missing while entry %d exists", ErrStateBroken, r.next, seq)
		}
	}
	return nil
}

// MakeStateEntry returns the entry that would follow the reader's last one.
func (r *StateReader) MakeStateEntry(t time.Time, kind StateKind, target string) StateEntry {
	return StateEntry{Seq: r.next, Prev: r.prev, Time: t, Kind: kind, Target: target}
}

// Witness records.
//
// An instance vouches, in its own log, for what it has read of the others'
// logs and of the state chain: EventWitness records whose Reason says what
// and whose Detail is exactly
//
//	log-head:   "<log ID> <size, decimal>"
//	state-head: "<length, decimal> <base64 SHA-256 of the last entry as stored>"
//
// A log is then never truncated or deleted, nor the state chain cut back,
// without contradicting a signed, checkpointed record of another log.
const (
	EventWitness Event = "witness"

	ReasonLogHead   = "log-head"
	ReasonStateHead = "state-head"
)

// FormatLogHead returns the Detail of a log-head witness record.
func FormatLogHead(log string, size int64) string { return log + " " + strconv.FormatInt(size, 10) }

// ParseLogHead parses the Detail of a log-head witness record.
func ParseLogHead(detail string) (log string, size int64, err error) {
	log, ns, ok := strings.Cut(detail, " ")
	if !ok || !ValidLogID(log) {
		return "", 0, corruptf("log-head witness malformed")
	}
	size, err = strconv.ParseInt(ns, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != ns {
		return "", 0, corruptf("log-head witness size malformed")
	}
	return log, size, nil
}

// FormatStateHead returns the Detail of a state-head witness record.
func FormatStateHead(length int64, head StateHash) string {
	return strconv.FormatInt(length, 10) + " " + head.String()
}

// ParseStateHead parses the Detail of a state-head witness record.
func ParseStateHead(detail string) (length int64, head StateHash, err error) {
	ns, hs, ok := strings.Cut(detail, " ")
	if !ok {
		return 0, head, corruptf("state-head witness malformed")
	}
	length, err = strconv.ParseInt(ns, 10, 64)
	if err != nil || length < 0 || strconv.FormatInt(length, 10) != ns {
		return 0, head, corruptf("state-head witness length malformed")
	}
	h, err := base64.StdEncoding.Strict().DecodeString(hs)
	if err != nil || len(h) != len(head) || !bytes.Equal([]byte(base64.StdEncoding.EncodeToString(h)), []byte(hs)) {
		return 0, head, corruptf("state-head witness hash malformed")
	}
	copy(head[:], h)
	return length, head, nil
}
