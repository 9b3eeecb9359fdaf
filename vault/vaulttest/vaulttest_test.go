package vaulttest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/vaulttest"
)

var scan = append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 4096)...)

var operator = vault.Actor{Principal: "operator-1", Reason: "test"}

// TestOpen is a user's test: the everyday path on a vault from Open, then
// the injected clock carries a token past its expiry and a document past
// its retention. The Sweep shreds only if the store made by Open follows
// the same clock (the vault's clock check refuses otherwise).
func TestOpen(t *testing.T) {
	ctx := context.Background()
	v := vaulttest.Open(t, vault.Config{})
	if v.Clock == nil || v.Store == nil || v.KEK == nil {
		t.Fatalf("Open left Clock %v, Store %v, KEK %v unset", v.Clock, v.Store, v.KEK)
	}
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
	if err != nil {
		t.Fatal(err)
	}
	who := vault.Requester{Principal: "reviewer-7"}
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: who.Principal, Purpose: "age-check"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := v.Redeem(ctx, g.Token, who)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, scan) {
		t.Fatalf("Redeem read %d bytes, err %v; want the %d bytes put", len(got), err, len(scan))
	}

	g, err = v.Grant(ctx, info.ID, vault.Access{Principal: who.Principal, Purpose: "age-check"})
	if err != nil {
		t.Fatal(err)
	}
	v.Clock.Advance(time.Hour)
	if _, _, err := v.Redeem(ctx, g.Token, who); !errors.Is(err, vault.ErrTokenExpired) {
		t.Fatalf("Redeem an hour after Grant: %v, want ErrTokenExpired", err)
	}

	v.Clock.Advance(vault.DefaultRetention)
	rep, err := v.Admin().Sweep(ctx, operator)
	if err != nil {
		t.Fatalf("Sweep past retention: %v", err)
	}
	if rep.Expired != 1 {
		t.Fatalf("Sweep shredded %d documents, want 1", rep.Expired)
	}
	if _, err := v.Grant(ctx, info.ID, vault.Access{Principal: who.Principal, Purpose: "age-check"}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Grant after the sweep: %v, want ErrNotFound", err)
	}
}

// TestOpenKeepsConfig: what the Config names is used, not replaced.
func TestOpenKeepsConfig(t *testing.T) {
	st, kek, clk := vaulttest.NewStore(), vaulttest.NewKEK(), vaulttest.NewClock()
	st.Now = clk.Now
	v := vaulttest.Open(t, vault.Config{Store: st, KEK: kek, Now: clk.Now})
	if v.Store != st || v.KEK != kek || v.Clock != nil {
		t.Fatalf("Open replaced a configured Store, KEK or Now")
	}
	if len(st.Keys()) == 0 {
		t.Fatal("the vault wrote nothing to the configured store")
	}
}

// TestKEKsDiffer: two test KEKs cannot open each other's records.
func TestKEKsDiffer(t *testing.T) {
	ctx := context.Background()
	a, b := vaulttest.NewKEK(), vaulttest.NewKEK()
	if a.ID() == b.ID() {
		t.Fatalf("two KEKs share the ID %q", a.ID())
	}
	ct, err := a.Encrypt(ctx, []byte("data key"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decrypt(ctx, ct, []byte("ad")); err == nil {
		t.Fatal("one test KEK opened another's ciphertext")
	}
}

// TestClockConcurrent: a Clock moved from many goroutines loses nothing
// (and -race sees no race).
func TestClockConcurrent(t *testing.T) {
	c := vaulttest.NewClock()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 500 {
				c.Advance(time.Second)
				c.Now()
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got, want := c.Now(), vaulttest.Start.Add(2000*time.Second); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}
