package token

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Prefix starts every token, so that secret scanners can find leaked ones.
const Prefix = "idv1_"

// MaxLen is the longest string Open looks at; longer ones are refused before
// any decoding. Real tokens are under 700 characters.
const MaxLen = 4096

// ErrInvalid is the one error for a token that does not open: empty, without
// the prefix, too long or short, not base64url, not authentic under this
// vault's keyset (edited, sealed by another keyset or for another vault), or
// with claims that do not decode.
var ErrInvalid = errors.New("token: invalid")

// adLabel starts the associated data; it separates tokens from any other use
// of the same keyset.
const adLabel = "idvault token v1"

// enc is strict so that each ciphertext has exactly one token string.
var enc = base64.RawURLEncoding.Strict()

// NewKeyset returns a fresh Tink AEAD keyset holding one AES-256-GCM key, for
// sealing tokens. Persist it wrapped by a KEK; it is a secret.
func NewKeyset() (*keyset.Handle, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("token: new keyset: %w", err)
	}
	return h, nil
}

// Rotate returns a copy of h with a new AES-256-GCM key added as primary.
// New tokens are sealed with the new key; tokens sealed under the older keys
// still open for as long as those keys stay in the keyset. h is not modified.
func Rotate(h *keyset.Handle) (*keyset.Handle, error) {
	if h == nil {
		return nil, errors.New("token: rotate: nil keyset")
	}
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("token: rotate: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, fmt.Errorf("token: rotate: %w", err)
	}
	nh, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("token: rotate: %w", err)
	}
	return nh, nil
}

// NewID returns 128 bits from crypto/rand, for Claims.ID. It is never zero.
func NewID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:]) // never returns an error; crashes the program if randomness fails
	}
	return id
}

// Sealer seals and opens the tokens of one vault. It is safe for concurrent
// use. It holds key material: printing it shows no key or vault bytes.
type Sealer struct {
	aead tink.AEAD
	ad   []byte          // adLabel || vaultID
	keys map[uint32]bool // IDs of the keys that open tokens
}

// NewSealer returns a Sealer for the vault vaultID using the AEAD keyset h
// (from NewKeyset or Rotate). The vault ID goes into every token's associated
// data, so tokens do not open in another vault; a zero vault ID is refused
// as a likely mistake.
func NewSealer(h *keyset.Handle, vaultID [16]byte) (*Sealer, error) {
	if h == nil {
		return nil, errors.New("token: nil keyset")
	}
	if vaultID == ([16]byte{}) {
		return nil, errors.New("token: zero vault ID")
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("token: keyset is not a usable AEAD keyset: %w", err)
	}
	ad := make([]byte, 0, len(adLabel)+len(vaultID))
	ad = append(ad, adLabel...)
	ad = append(ad, vaultID[:]...)
	keys := make(map[uint32]bool, h.Len())
	for _, id := range KeyIDs(h) {
		keys[id] = true
	}
	return &Sealer{aead: a, ad: ad, keys: keys}, nil
}

// KeyIDs returns the IDs of the enabled keys of h, primary first.
func KeyIDs(h *keyset.Handle) []uint32 {
	var ids []uint32
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil || e.KeyStatus() != keyset.Enabled {
			continue
		}
		if e.IsPrimary() {
			ids = append([]uint32{e.KeyID()}, ids...)
		} else {
			ids = append(ids, e.KeyID())
		}
	}
	return ids
}

// KeyID returns the ID of the key tok says it was sealed under (Tink's
// 5-byte prefix: 0x01 and the key ID, big-endian), without authenticating
// anything. ok is false when tok is not shaped like a token.
func KeyID(tok string) (id uint32, ok bool) {
	body, found := strings.CutPrefix(tok, Prefix)
	if !found || len(body) < 8 || len(tok) > MaxLen {
		return 0, false
	}
	var b [6]byte
	if _, err := enc.Decode(b[:], []byte(body[:8])); err != nil || b[0] != 1 {
		return 0, false
	}
	return uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]), true
}

// KnowsKey reports whether tok names a key of this Sealer's keyset (it
// authenticates nothing: a forged token may name a known key). A token
// naming an unknown key may have been sealed under a key rotated in since
// this Sealer was made.
func (s *Sealer) KnowsKey(tok string) bool {
	id, ok := KeyID(tok)
	return !ok || s.keys[id]
}

// Retire returns a copy of h without the non-primary keys for which
// retire(keyID) is true; the primary is never removed. h is not modified.
func Retire(h *keyset.Handle, retire func(keyID uint32) bool) (*keyset.Handle, error) {
	if h == nil {
		return nil, errors.New("token: retire: nil keyset")
	}
	m := keyset.NewManagerFromHandle(h)
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("token: retire: %w", err)
		}
		if !e.IsPrimary() && retire(e.KeyID()) {
			if err := m.Delete(e.KeyID()); err != nil {
				return nil, fmt.Errorf("token: retire: %w", err)
			}
		}
	}
	nh, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("token: retire: %w", err)
	}
	return nh, nil
}

// Seal validates c and returns it as a token. Times are truncated to the
// millisecond. Invalid claims give an error wrapping ErrBadClaims.
func (s *Sealer) Seal(c Claims) (string, error) {
	// Sized exactly for valid claims; min keeps absurd input from
	// allocating before it is refused.
	pt, err := appendClaims(make([]byte, 0, min(fixedLen+len(c.Principal)+len(c.Purpose), maxClaimsLen)), c)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadClaims, err)
	}
	ct, err := s.aead.Encrypt(pt, s.ad)
	clear(pt)
	if err != nil {
		return "", fmt.Errorf("token: seal: %w", err)
	}
	out := make([]byte, len(Prefix)+enc.EncodedLen(len(ct)))
	copy(out, Prefix)
	enc.Encode(out[len(Prefix):], ct)
	return string(out), nil
}

// invalid wraps ErrInvalid with a reason that names the failed check and
// never anything taken from the token.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalid, reason)
}

// Open authenticates tok and returns its claims. Every failure wraps
// ErrInvalid; the error never contains the token. Open does not check
// expiry or principal: that is the caller's, with its clock.
func (s *Sealer) Open(tok string) (Claims, error) {
	// Cheap checks first, on the string alone, so that garbage costs nothing
	// and the base64 decoder (which skips '\r' and '\n') never sees
	// anything outside the alphabet.
	if len(tok) > MaxLen {
		return Claims{}, invalid("too long")
	}
	body, ok := strings.CutPrefix(tok, Prefix)
	if !ok {
		return Claims{}, invalid("missing prefix")
	}
	if len(body) < enc.EncodedLen(minClaimsLen) {
		return Claims{}, invalid("too short")
	}
	for i := 0; i < len(body); i++ {
		if !isURLChar(body[i]) {
			return Claims{}, invalid("character outside base64url alphabet")
		}
	}
	ct, err := enc.DecodeString(body)
	if err != nil {
		return Claims{}, invalid("bad base64url")
	}
	pt, err := s.aead.Decrypt(ct, s.ad)
	if err != nil {
		// Tink's error says nothing useful and nothing secret; one
		// reason covers edited bytes, another keyset and another vault.
		return Claims{}, invalid("not authentic")
	}
	c, err := decodeClaims(pt)
	clear(pt)
	if err != nil {
		// Authentic yet undecodable: a sealer bug or a key shared with a
		// foreign encoder. Refused all the same.
		return Claims{}, invalid("bad claims encoding")
	}
	return c, nil
}

func isURLChar(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

// String returns a fixed text: a Sealer holds a key.
func (s *Sealer) String() string { return "token.Sealer{REDACTED}" }

// GoString returns the same fixed text as String, for %#v.
func (s *Sealer) GoString() string { return s.String() }

// Format prints the fixed text of String for every verb, so that neither
// %v, %+v, %#v nor %x can reach the key.
func (s *Sealer) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
