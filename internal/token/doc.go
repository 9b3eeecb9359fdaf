// Package token implements idvault's access-token format: an opaque,
// URL-safe string that carries one grant (token ID, object ID, principal,
// purpose, issue and expiry time) sealed with the vault's token key.
//
// # Format
//
// A token is
//
//	"idv1_" || base64url-nopad( TinkAEAD.Encrypt(claims, "idvault token v1" || vaultID) )
//
// The prefix lets secret scanners find leaked tokens. The AEAD is a Tink
// keyset of AES-256-GCM keys with Tink's 5-byte key-ID prefix, so a token
// sealed under a key that was rotated away (still in the keyset, no longer
// primary) keeps opening, and the right key is found without trial
// decryption. The associated data binds every token to one vault: a token of
// another vault, or of any other system, fails to open.
//
// The claims are encoded canonically (exactly one encoding per value) so
// that a token's bytes and its meaning cannot drift apart:
//
//	version    1 byte   0x01
//	ID         16 bytes token ID (non-zero; the single-use ledger key)
//	ObjectID   16 bytes (non-zero)
//	IssuedAt   8 bytes  big-endian int64 Unix milliseconds (UTC)
//	ExpiresAt  8 bytes  big-endian int64 Unix milliseconds, > IssuedAt
//	Principal  2-byte big-endian length (1..256) || UTF-8 bytes
//	Purpose    2-byte big-endian length (1..128) || UTF-8 bytes
//
// Times carry millisecond precision: Seal truncates finer precision (which
// can only shorten a token's life) and Open returns UTC times. Both times
// must lie after the Unix epoch and before year 10000. Decoding is strict:
// an unknown version, a zero ID, an out-of-range length, invalid UTF-8,
// out-of-range times or trailing bytes are all refused.
//
// Tokens are at most a little over 600 characters; Open refuses anything
// longer than MaxLen, without the prefix, or with characters outside the
// base64url alphabet before decoding anything.
//
// # Errors
//
// Open reports every failure (malformed, not authentic, wrong vault, bad
// claims) as an error wrapping ErrInvalid, whose text never contains the
// token or anything from it. Open does not check expiry: the caller does,
// with its own clock and leeway. Seal refuses invalid claims with an error
// wrapping ErrBadClaims.
package token
