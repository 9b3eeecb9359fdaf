package kms

import (
	"context"
	"errors"
)

// ErrDecrypt is the one opaque error a KEK returns when ciphertext or
// associated data fail authentication (wrong key, edited bytes, wrong
// associated data). It says nothing about which, so that a caller probing
// with edited ciphertexts learns one bit at most.
var ErrDecrypt = errors.New("kms: decryption failed")

// ErrUnavailable is returned (wrapped) when the KEK could not be asked at
// all or did not answer: a transport error, a timeout, throttling, a key
// that is disabled or pending deletion, an HSM session that failed. It is
// never an authentication verdict: callers must treat it as "unknown" and
// refuse without destroying anything, whereas ErrDecrypt means the
// ciphertext or its associated data are not what this KEK sealed.
var ErrUnavailable = errors.New("kms: key-encryption key unavailable")

// KEK is a key-encryption key.
//
// Encrypt seals plaintext (a data key) bound to associatedData; Decrypt
// opens it only with the same associatedData. Decrypt of anything not
// produced by Encrypt of this KEK (or of a key it was rotated from) with the
// same associated data returns an error wrapping ErrDecrypt and nothing
// else; a KEK that cannot reach its key (network, throttling, a disabled
// key, an HSM fault) returns an error wrapping ErrUnavailable instead, never
// ErrDecrypt. Both return the context's error, without doing the work, when ctx is
// already done. ID names the key (e.g. "local:3f2a…" or a KMS URI); it is not
// secret and is carried in key records so a vault can tell which KEK wrapped
// what.
//
// Implementations are safe for concurrent use.
type KEK interface {
	Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error)
	ID() string
}
