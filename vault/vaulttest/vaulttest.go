// Package vaulttest lets you test your own code against a real vault
// without a MinIO, a KMS or a wall clock: an in-memory store, a test
// key-encryption key, a manual clock, and Open, which gives a vault on
// them that is closed when the test ends.
//
//	func TestAgeCheck(t *testing.T) {
//		v := vaulttest.Open(t, vault.Config{})
//		info, err := v.Put(ctx, vault.Document{...})
//		...
//		v.Clock.Advance(73 * time.Hour) // past the 72 h retention
//		...
//	}
//
// The vault is the real one: every audit record, token check, retention
// deadline and clock check runs as in production. Only what sits behind
// the vault's interfaces is replaced, and each replacement keeps its
// interface's contract (the store passes storetest, as fsstore and s3store
// do). None of it is for production: the store keeps everything in memory,
// and the KEK's key never leaves the process and dies with it.
//
// Import it from _test.go files only. It imports testing only for
// testing.TB (Open's argument), which registers no flags.
package vaulttest

import (
	"context"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

// Store is an in-memory store.Store, store.Clock and store.ExpiryTagger
// that keeps the Store contract (create-if-absent, retention, sorted
// List). Its Now field is the clock it tells its time by and checks
// retention against (time.Now when nil): give it the vault's clock, or the
// vault's clock check refuses to shred once a test moves one and not the
// other. Open does this for you.
//
// Besides the store.Store methods it has, for tests that look at or tamper
// with what is stored: Keys (every key, sorted), Bytes (a copy of one
// object), SetBytes (overwrite one object, regardless of retention, as an
// attacker with the bucket's credentials could) and Expirable.
//
// Store is safe for concurrent use.
type Store = memstore.Store

// NewStore returns an empty Store.
func NewStore() *Store { return memstore.New() }

// Clock is a manual clock for Config.Now and Store.Now, safe for
// concurrent use: its methods are Now, Advance(d) and Set(t), and its time
// moves only when a test calls Advance or Set. Use it instead of sleeping:
// a token's expiry, a retention deadline or a quota window is crossed by
// Advance, at once and every run alike.
type Clock = memstore.Clock

// Start is the instant a Clock from NewClock shows first.
var Start = memstore.ClockStart

// NewClock returns a Clock at Start.
func NewClock() *Clock { return memstore.NewClock() }

// NewKEK returns a new key-encryption key held in memory (a Tink
// AES-256-GCM AEAD behind kms.FromAEAD) with a random ID "test:<hex>": two
// calls give two KEKs that cannot open each other's records. It is lost
// when the process ends, and so is everything it wrapped.
func NewKEK() kms.KEK { return kektest.NewKEK() }

// Vault is an open vault and what Open made it from.
type Vault struct {
	*vault.Vault

	// Store is Config.Store: the *Store Open made, unless the
	// Config named one.
	Store store.Store
	// KEK is Config.KEK.
	KEK kms.KEK
	// Clock is the clock Open made for Config.Now and the Store; nil when
	// the Config named its own Now.
	Clock *Clock
}

// CloseTimeout bounds the Close that Open registers with t.Cleanup.
const CloseTimeout = 10 * time.Second

// Open opens a vault for a test on cfg, filling what cfg leaves zero:
// Store with a new *Store, KEK with NewKEK, and Now with a new Clock that
// the Store made here follows too. Every other field keeps the vault's
// safe default. It fails tb if the vault does not open, and closes the
// vault when the test ends, failing tb if Close reports an error (records
// that did not reach the audit log).
func Open(tb testing.TB, cfg vault.Config) *Vault {
	tb.Helper()
	tv := &Vault{}
	if cfg.Now == nil {
		tv.Clock = NewClock()
		cfg.Now = tv.Clock.Now
	}
	if cfg.Store == nil {
		m := NewStore()
		m.Now = cfg.Now
		cfg.Store = m
	}
	if cfg.KEK == nil {
		cfg.KEK = NewKEK()
	}
	v, err := vault.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("vaulttest: open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
		defer cancel()
		if err := v.Close(ctx); err != nil {
			tb.Errorf("vaulttest: close: %v", err)
		}
	})
	tv.Vault, tv.Store, tv.KEK = v, cfg.Store, cfg.KEK
	return tv
}
