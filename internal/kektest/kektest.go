// Package kektest gives tests a key-encryption key held in memory: a fresh
// Tink AES-256-GCM keyset behind kms.FromAEAD. It is for tests only; a real
// KEK lives in a KMS or a passphrase-protected kms.Local keyset.
package kektest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/idvault/idvault/kms"
)

// New returns a new in-memory KEK with a random ID ("test:<hex>"), so two
// calls give two KEKs that cannot open each other's records.
func New(tb testing.TB) kms.KEK {
	tb.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		tb.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		tb.Fatal(err)
	}
	var id [6]byte
	rand.Read(id[:])
	return kms.FromAEAD("test:"+hex.EncodeToString(id[:]), a)
}
