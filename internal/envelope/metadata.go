package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Version is the format version written into every key record and payload.
// Any change to the byte layout, the encodings, the associated data or
// segmentSize needs a new version; the frozen vectors in testdata catch a
// change made without one.
const Version = 1

// Sentinel errors, matched with errors.Is.
var (
	// ErrTampered is any authentication or parse failure of a key record or
	// payload: edited, truncated, extended, swapped between objects, or not
	// an idvault object at all. It deliberately says no more than that.
	ErrTampered = errors.New("envelope: object tampered or corrupt")
	// ErrUnsupportedVersion: a key record carries a format version this code
	// cannot read.
	ErrUnsupportedVersion = errors.New("envelope: unsupported format version")
	// ErrWrongKEK: the key record was wrapped by a KEK whose ID differs from
	// the one given (rotation: fetch that KEK, see PeekKEKID).
	ErrWrongKEK = errors.New("envelope: key record was wrapped by another KEK")
	// ErrInvalidMetadata: Seal or Reseal was given metadata that the format
	// cannot hold (a field too long, a negative size, a time outside the
	// UnixNano range, IDs that differ from the Key's).
	ErrInvalidMetadata = errors.New("envelope: invalid metadata")
	// ErrKeyDestroyed: a Key was used after Destroy (or is a zero Key that
	// Seal or Open did not make).
	ErrKeyDestroyed = errors.New("envelope: key destroyed")
)

// Limits of the variable-length metadata fields, in bytes.
const (
	MaxKindLen        = 64
	MaxContentTypeLen = 128
	SubjectMACLen     = 32
)

// Metadata describes one stored object. It is kept encrypted and
// authenticated in the object's key record.
type Metadata struct {
	VaultID     [16]byte
	ObjectID    [16]byte
	Kind        string    // e.g. "drivers-license"; at most MaxKindLen bytes
	ContentType string    // e.g. "image/jpeg"; at most MaxContentTypeLen bytes
	Size        int64     // plaintext bytes, >= 0; recorded, not enforced: compare PayloadSize(Size) with the stored payload
	Created     time.Time // stored as UnixNano; Open returns it in UTC
	Expires     time.Time // stored as UnixNano; Open returns it in UTC
	SubjectMAC  []byte    // keyed hash of the subject: empty or SubjectMACLen bytes
	Canary      bool      // a decoy: touching it raises an alarm
	LegalHold   bool      // expiry is suspended
}

const (
	flagCanary    = 1 << 0
	flagLegalHold = 1 << 1
	flagsKnown    = flagCanary | flagLegalHold
)

// metadataLen is the fixed length of the metadata encoding:
//
//	vaultID (16) || objectID (16) || flags (1) || size (u64) || created (i64) || expires (i64) ||
//	len(kind) (1) || kind padded with zeros to MaxKindLen ||
//	len(contentType) (1) || contentType padded to MaxContentTypeLen ||
//	len(subjectMAC) (1) || subjectMAC padded to SubjectMACLen
//
// All integers are big-endian. Every variable field is length-prefixed and
// then zero-padded to its maximum, which keeps the encoding injective (and
// canonical: decode refuses non-zero padding) while making every record the
// same size, so the canary flag, kind or content type cannot be read from a
// record's length.
const metadataLen = 16 + 16 + 1 + 8 + 8 + 8 + 1 + MaxKindLen + 1 + MaxContentTypeLen + 1 + SubjectMACLen

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func validTime(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// validate reports why md cannot be encoded. Messages name the field, never
// its value.
func (md *Metadata) validate() error {
	switch {
	case len(md.Kind) > MaxKindLen:
		return fmt.Errorf("%w: Kind longer than %d bytes", ErrInvalidMetadata, MaxKindLen)
	case len(md.ContentType) > MaxContentTypeLen:
		return fmt.Errorf("%w: ContentType longer than %d bytes", ErrInvalidMetadata, MaxContentTypeLen)
	case md.Size < 0:
		return fmt.Errorf("%w: negative Size", ErrInvalidMetadata)
	case !validTime(md.Created):
		return fmt.Errorf("%w: Created outside the UnixNano range", ErrInvalidMetadata)
	case !validTime(md.Expires):
		return fmt.Errorf("%w: Expires outside the UnixNano range", ErrInvalidMetadata)
	case len(md.SubjectMAC) != 0 && len(md.SubjectMAC) != SubjectMACLen:
		return fmt.Errorf("%w: SubjectMAC must be empty or %d bytes", ErrInvalidMetadata, SubjectMACLen)
	}
	return nil
}

// appendMetadata appends the fixed-length encoding of md (validated) to b.
func appendMetadata(b []byte, md *Metadata) []byte {
	b = append(b, md.VaultID[:]...)
	b = append(b, md.ObjectID[:]...)
	var flags byte
	if md.Canary {
		flags |= flagCanary
	}
	if md.LegalHold {
		flags |= flagLegalHold
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(md.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(md.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(md.Expires.UnixNano()))
	b = appendPadded(b, []byte(md.Kind), MaxKindLen)
	b = appendPadded(b, []byte(md.ContentType), MaxContentTypeLen)
	b = appendPadded(b, md.SubjectMAC, SubjectMACLen)
	return b
}

func appendPadded(b, field []byte, max int) []byte {
	b = append(b, byte(len(field)))
	b = append(b, field...)
	return append(b, make([]byte, max-len(field))...)
}

// decodeMetadata is the inverse of appendMetadata. It accepts only canonical
// encodings (exact length, known flags, zero padding, valid field lengths), so
// decode is injective too: one Metadata, one encoding.
func decodeMetadata(b []byte) (Metadata, bool) {
	var md Metadata
	if len(b) != metadataLen {
		return md, false
	}
	copy(md.VaultID[:], b[0:16])
	copy(md.ObjectID[:], b[16:32])
	flags := b[32]
	if flags&^flagsKnown != 0 {
		return md, false
	}
	md.Canary = flags&flagCanary != 0
	md.LegalHold = flags&flagLegalHold != 0
	size := binary.BigEndian.Uint64(b[33:41])
	if size > math.MaxInt64 {
		return md, false
	}
	md.Size = int64(size)
	md.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b[41:49]))).UTC()
	md.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[49:57]))).UTC()
	rest := b[57:]
	var kind, ctype, mac []byte
	var ok bool
	if kind, rest, ok = cutPadded(rest, MaxKindLen); !ok {
		return md, false
	}
	if ctype, rest, ok = cutPadded(rest, MaxContentTypeLen); !ok {
		return md, false
	}
	if mac, _, ok = cutPadded(rest, SubjectMACLen); !ok {
		return md, false
	}
	if len(mac) != 0 && len(mac) != SubjectMACLen {
		return md, false
	}
	md.Kind = string(kind)
	md.ContentType = string(ctype)
	if len(mac) != 0 {
		md.SubjectMAC = append([]byte(nil), mac...)
	}
	return md, true
}

// cutPadded splits a length-prefixed, zero-padded field of capacity max off
// the front of b. The caller guarantees len(b) >= 1+max (fixed layout).
func cutPadded(b []byte, max int) (field, rest []byte, ok bool) {
	n := int(b[0])
	if n > max {
		return nil, nil, false
	}
	for _, c := range b[1+n : 1+max] {
		if c != 0 {
			return nil, nil, false
		}
	}
	return b[1 : 1+n], b[1+max:], true
}
