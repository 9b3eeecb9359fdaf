// Package kektest gives tests a key-encryption key held in memory: a fresh
// Tink AES-256-GCM keyset behind kms.FromAEAD. It is for tests only; a real
// KEK lives in a KMS or a passphrase-protected kms.Local keyset. Users'
// tests get the same from vaulttest.NewKEK.
package kektest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/idvault/idvault/kms"
)

// New returns a new in-memory KEK with a random ID ("test:<hex>"), so two
// calls give two KEKs that cannot open each other's records.
func New(tb testing.TB) kms.KEK {
	tb.Helper()
	return NewKEK()
}

// NewKEK is New for code without a testing.TB (Examples); it panics if
// Tink cannot make a keyset, which it does only when crypto/rand fails.
func NewKEK() kms.KEK {
	var id [6]byte
	rand.Read(id[:])
	return kms.FromAEAD("test:"+hex.EncodeToString(id[:]), NewAEAD())
}

// NewAEAD returns a fresh Tink AES-256-GCM AEAD, the primitive a KMS
// client stands for in tests.
func NewAEAD() tink.AEAD {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		panic("kektest: new keyset: " + err.Error())
	}
	a, err := aead.New(h)
	if err != nil {
		panic("kektest: new AEAD: " + err.Error())
	}
	return a
}
