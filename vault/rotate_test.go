package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/token"
)

// TestRotationOpensAtOnce (issue 12.3): an instance that refused a forged
// token naming an unknown key a moment ago still opens a fresh token
// sealed under a key another instance just rotated in.
func TestRotationOpensAtOnce(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	kek := testKEK(t)
	a := openTestVault(t, st, kek, nil)
	b := openTestVault(t, st, kek, nil)
	other := openTestVault(t, fsBackend(t), testKEK(t), nil) // another vault: its keys are unknown here
	oinfo := putImage(t, other, image(5000, ""), "m")
	forged := grant(t, other, oinfo.ID, "r")
	info := putImage(t, a, image(5000, ""), "m")
	for round := range 3 {
		if _, err := redeemAll(b, forged.Token, "r"); !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("forged token: %v", err)
		}
		if err := a.Admin().RotateTokenKey(ctx, testActor, RotateOptions{}); err != nil {
			t.Fatal(err)
		}
		g := grant(t, a, info.ID, "r")
		if _, err := redeemAll(b, g.Token, "r"); err != nil {
			t.Fatalf("round %d: fresh token under the just-rotated key refused right after a forged one: %v", round, err)
		}
	}
}

// leakedToken seals a token for info under keyset h, as someone holding a
// leaked token key would.
func leakedToken(t *testing.T, v *testVault, s *token.Sealer, id string) string {
	t.Helper()
	oid, err := parseObjectID(id)
	if err != nil {
		t.Fatal(err)
	}
	now := v.clock.Now().UTC().Truncate(time.Millisecond)
	tok, err := s.Seal(token.Claims{ID: token.NewID(), ObjectID: oid, Principal: "r", Purpose: "p", IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRotationRetiresAndRevokes: a demoted key keeps opening tokens until
// no token it sealed can still be valid, then a rotation retires it; with
// Revoke, a leaked key stops minting tokens at once here and within
// keyRefresh on another instance. A legitimate token is never refused by
// an ordinary rotation.
func TestRotationRetiresAndRevokes(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	kek := testKEK(t)
	a := openTestVault(t, st, kek, nil)
	b := openTestVault(t, st, kek, nil)
	info := putImage(t, a, image(5000, ""), "m")
	_, leaked := a.keyset()
	before := grant(t, a, info.ID, "r")
	if err := a.Admin().RotateTokenKey(ctx, testActor, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(b, before.Token, "r"); err != nil {
		t.Fatalf("legitimate token after a rotation: %v", err)
	}
	// Still inside the retirement delay: a second rotation keeps the key.
	a.clock.Advance(keyRetireAfter - time.Minute)
	if err := a.Admin().RotateTokenKey(ctx, testActor, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(a, leakedToken(t, a, leaked, info.ID), "r"); err != nil {
		t.Fatalf("demoted key retired too early: %v", err)
	}
	a.clock.Advance(2 * time.Minute)
	if err := a.Admin().RotateTokenKey(ctx, testActor, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(a, leakedToken(t, a, leaked, info.ID), "r"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("retired key still opens tokens: %v", err)
	}

	// Revoke: the key in use now stops opening tokens at once.
	_, current := a.keyset()
	b.clock.Set(a.clock.Now())
	tok := leakedToken(t, b, current, info.ID)
	if _, err := redeemAll(b, tok, "r"); err != nil {
		t.Fatalf("token under the current key: %v", err)
	}
	if err := a.Admin().RotateTokenKey(ctx, testActor, RotateOptions{Revoke: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(a, leakedToken(t, a, current, info.ID), "r"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("revoked key opens a token at the revoking instance: %v", err)
	}
	b.clock.Advance(keyRefresh + time.Second)
	if _, err := redeemAll(b, leakedToken(t, b, current, info.ID), "r"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("revoked key opens a token at another instance after keyRefresh: %v", err)
	}
	// And tokens under the new key open everywhere.
	g := grant(t, a, info.ID, "r")
	if _, err := redeemAll(b, g.Token, "r"); err != nil {
		t.Fatal(err)
	}
}
