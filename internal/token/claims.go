package token

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Claims is what a token grants: one principal may read one object for one
// purpose between IssuedAt and ExpiresAt, once (ID is the single-use ledger
// key). None of its fields is a subject identifier, so Claims may be printed.
type Claims struct {
	ID        [16]byte  // token ID: 128 random bits (see NewID); must be non-zero
	ObjectID  [16]byte  // the object this token opens; must be non-zero
	Principal string    // who may redeem it: 1..MaxPrincipalLen bytes of UTF-8
	Purpose   string    // why: 1..MaxPurposeLen bytes of UTF-8
	IssuedAt  time.Time // millisecond precision; returned by Open in UTC
	ExpiresAt time.Time // must be after IssuedAt at millisecond precision
}

// Limits of the claims encoding.
const (
	MaxPrincipalLen = 256 // bytes
	MaxPurposeLen   = 128 // bytes
)

// ErrBadClaims is wrapped by Seal's error when the claims cannot be sealed:
// a zero ID or object ID, an empty, over-long or non-UTF-8 principal or
// purpose, a time out of range, or ExpiresAt not after IssuedAt.
var ErrBadClaims = errors.New("token: invalid claims")

const (
	claimsVersion = 1

	// fixedLen is version + ID + ObjectID + IssuedAt + ExpiresAt + the two
	// length prefixes.
	fixedLen     = 1 + 16 + 16 + 8 + 8 + 2 + 2
	minClaimsLen = fixedLen + 1 + 1
	maxClaimsLen = fixedLen + MaxPrincipalLen + MaxPurposeLen

	// Times are kept in (1970-01-01, 10000-01-01) so that every value
	// survives time.UnixMilli both ways and prints as a four-digit year.
	minMilli = 1                   // 1970-01-01T00:00:00.001Z
	maxMilli = 253402300800000 - 1 // 9999-12-31T23:59:59.999Z
)

// errClaims is the reason a claims value or encoding is refused. The text
// names the field and never its content.
type errClaims string

func (e errClaims) Error() string { return string(e) }

// millis returns t as Unix milliseconds, or an error when t is out of range.
// time.Time.UnixMilli is undefined far outside int64 range, so the year is
// checked first.
func millis(t time.Time, field string) (int64, error) {
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return 0, errClaims(field + " out of range")
	}
	ms := t.UnixMilli()
	if ms < minMilli || ms > maxMilli {
		return 0, errClaims(field + " out of range")
	}
	return ms, nil
}

func checkString(s string, maxLen int, field string) error {
	if len(s) < 1 || len(s) > maxLen {
		return errClaims(fmt.Sprintf("%s length %d not in 1..%d", field, len(s), maxLen))
	}
	if !utf8.ValidString(s) {
		return errClaims(field + " is not valid UTF-8")
	}
	return nil
}

// validate checks every rule on c and returns its times in Unix
// milliseconds. Seal and decodeClaims share it, so that whatever decodes can
// be sealed again and the encoding stays canonical.
func validate(c Claims) (iat, exp int64, err error) {
	if c.ID == [16]byte{} {
		return 0, 0, errClaims("zero token ID")
	}
	if c.ObjectID == [16]byte{} {
		return 0, 0, errClaims("zero object ID")
	}
	if err := checkString(c.Principal, MaxPrincipalLen, "principal"); err != nil {
		return 0, 0, err
	}
	if err := checkString(c.Purpose, MaxPurposeLen, "purpose"); err != nil {
		return 0, 0, err
	}
	if iat, err = millis(c.IssuedAt, "issued-at"); err != nil {
		return 0, 0, err
	}
	if exp, err = millis(c.ExpiresAt, "expires-at"); err != nil {
		return 0, 0, err
	}
	if exp <= iat {
		return 0, 0, errClaims("expires-at not after issued-at")
	}
	return iat, exp, nil
}

// appendClaims validates c and appends its canonical encoding to dst.
func appendClaims(dst []byte, c Claims) ([]byte, error) {
	iat, exp, err := validate(c)
	if err != nil {
		return dst, err
	}
	dst = append(dst, claimsVersion)
	dst = append(dst, c.ID[:]...)
	dst = append(dst, c.ObjectID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(iat))
	dst = binary.BigEndian.AppendUint64(dst, uint64(exp))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(c.Principal)))
	dst = append(dst, c.Principal...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(c.Purpose)))
	dst = append(dst, c.Purpose...)
	return dst, nil
}

// decodeClaims is the strict inverse of appendClaims: it accepts exactly the
// encodings appendClaims produces, so appendClaims(decodeClaims(b)) == b.
func decodeClaims(b []byte) (Claims, error) {
	var c Claims
	if len(b) < minClaimsLen || len(b) > maxClaimsLen {
		return Claims{}, errClaims("claims length out of range")
	}
	if b[0] != claimsVersion {
		return Claims{}, errClaims("unknown claims version")
	}
	b = b[1:]
	copy(c.ID[:], b[:16])
	copy(c.ObjectID[:], b[16:32])
	iat := int64(binary.BigEndian.Uint64(b[32:40]))
	exp := int64(binary.BigEndian.Uint64(b[40:48]))
	b = b[48:]

	var s [2]string
	limits := [2]int{MaxPrincipalLen, MaxPurposeLen}
	for i := range s {
		if len(b) < 2 {
			return Claims{}, errClaims("claims truncated")
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > limits[i] || n > len(b) {
			return Claims{}, errClaims("string length out of range")
		}
		s[i] = string(b[:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return Claims{}, errClaims("trailing bytes after claims")
	}
	c.Principal, c.Purpose = s[0], s[1]
	if iat < minMilli || iat > maxMilli || exp < minMilli || exp > maxMilli {
		return Claims{}, errClaims("time out of range")
	}
	c.IssuedAt = time.UnixMilli(iat).UTC()
	c.ExpiresAt = time.UnixMilli(exp).UTC()
	if _, _, err := validate(c); err != nil {
		return Claims{}, err
	}
	return c, nil
}
