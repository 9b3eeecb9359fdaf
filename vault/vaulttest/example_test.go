package vaulttest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/vaulttest"
)

// A vault on the in-memory store, a test KEK and a manual clock, shared by
// the vault and the store. In a test, vaulttest.Open(t, vault.Config{})
// does the same in one line and closes the vault at the end.
func Example() {
	ctx := context.Background()
	clk := vaulttest.NewClock()
	st := vaulttest.NewStore()
	st.Now = clk.Now
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: vaulttest.NewKEK(), Now: clk.Now})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)

	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
	if err != nil {
		log.Fatal(err)
	}
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	if err != nil {
		log.Fatal(err)
	}

	clk.Advance(10 * time.Minute) // no sleep: the token is past its expiry at once
	_, _, err = v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"})
	fmt.Println(errors.Is(err, vault.ErrTokenExpired))
	// Output: true
}

// A Clock moves only when told to.
func ExampleClock() {
	c := vaulttest.NewClock()
	fmt.Println(c.Now().Format(time.RFC3339))
	c.Advance(72 * time.Hour)
	fmt.Println(c.Now().Format(time.RFC3339))
	c.Set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	fmt.Println(c.Now().Format(time.RFC3339))
	// Output:
	// 2026-11-21T09:00:00Z
	// 2026-11-24T09:00:00Z
	// 2030-01-01T00:00:00Z
}

// What the vault stores is there to look at (and to tamper with).
func ExampleStore() {
	ctx := context.Background()
	st := vaulttest.NewStore()
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: vaulttest.NewKEK()})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)
	info, _ := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
	payload, ok := st.Bytes("blobs/" + info.ID)
	fmt.Println(ok, bytes.Contains(payload, scan[:4])) // stored, and the JPEG magic is encrypted away
	// Output: true false
}
