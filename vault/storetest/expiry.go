package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

// testExpiryTagger checks the contract of the optional store.ExpiryTagger,
// on stores that implement it: Put with Expirable stores the object as
// any Put does; SetExpirable is idempotent, leaves the content alone, and
// fails with ErrNotFound and ErrInvalidKey where documented. Whether the
// store's own expiry then honours the mark is the backend's own test (on
// S3 it takes days).
func testExpiryTagger(t *testing.T, s store.Store) {
	et, ok := s.(store.ExpiryTagger)
	if !ok {
		t.Skip("the store has no expiry of its own (no store.ExpiryTagger)")
	}
	ctx := t.Context()
	data := payload(7, 1000)
	if err := put(ctx, s, "blobs/x", data, store.PutOptions{IfAbsent: true, Expirable: true}); err != nil {
		t.Fatalf("Put with Expirable: %v", err)
	}
	for _, expirable := range []bool{false, false, true, true, false} {
		if err := et.SetExpirable(ctx, "blobs/x", expirable); err != nil {
			t.Fatalf("SetExpirable(%t): %v", expirable, err)
		}
	}
	if got, err := get(ctx, s, "blobs/x"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content after SetExpirable: %d bytes, %v", len(got), err)
	}
	if err := et.SetExpirable(ctx, "blobs/absent", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetExpirable of an absent key: %v, want store.ErrNotFound", err)
	}
	if err := et.SetExpirable(ctx, "a//b", true); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("SetExpirable of an invalid key: %v, want store.ErrInvalidKey", err)
	}
}
