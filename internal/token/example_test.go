package token_test

import (
	"fmt"
	"time"

	"github.com/idvault/idvault/internal/token"
)

func Example() {
	// In a vault the keyset is created once, wrapped by the KEK and stored.
	h, err := token.NewKeyset()
	if err != nil {
		panic(err)
	}
	vaultID := token.NewID()
	s, err := token.NewSealer(h, vaultID)
	if err != nil {
		panic(err)
	}

	now := time.Date(2026, 4, 20, 9, 30, 0, 0, time.UTC)
	tok, err := s.Seal(token.Claims{
		ID:        token.NewID(),
		ObjectID:  token.NewID(),
		Principal: "reviewer-7",
		Purpose:   "age-check",
		IssuedAt:  now,
		ExpiresAt: now.Add(60 * time.Second),
	})
	if err != nil {
		panic(err)
	}

	c, err := s.Open(tok)
	if err != nil {
		panic(err)
	}
	// The caller checks expiry and the principal itself.
	fmt.Println(c.Principal, c.Purpose, c.ExpiresAt.Sub(c.IssuedAt))

	_, err = s.Open(tok[:len(tok)-1])
	fmt.Println(err != nil)
	// Output:
	// reviewer-7 age-check 1m0s
	// true
}
