package vault

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// RotateTokenKey adds a new token-sealing key and makes it primary. Tokens
// sealed under older keys still open until they expire; other instances
// pick the new key up the first time they meet a token sealed with it.
// Run it from one place at a time (a cron job, the CLI): two concurrent
// rotations keep only one of the two new keys. by is recorded in the
// audit log.
func (v *Vault) RotateTokenKey(ctx context.Context, by Actor) error {
	if v.isClosed() {
		return ErrClosed
	}
	if err := by.check("rotate token key"); err != nil {
		return err
	}
	cur, err := loadOrCreateSystemKeys(ctx, v.st, v.kek)
	if err != nil {
		return err
	}
	if cur.tokens, err = token.Rotate(cur.tokens); err != nil {
		return fmt.Errorf("vault: rotate token key: %w", err)
	}
	enc, err := cur.marshal(ctx, v.kek)
	if err != nil {
		return err
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventRotate, Outcome: audit.OutcomeOK, Principal: by.principal(), Detail: clip("token key: "+by.Reason, 500)}); err != nil {
		return err
	}
	if err := v.st.Put(ctx, systemKeysetKey, bytes.NewReader(enc), int64(len(enc)), store.PutOptions{}); err != nil {
		return fmt.Errorf("vault: store rotated keyset: %w", err)
	}
	return v.installKeys(cur)
}

// reloadKeys re-reads the keyset from the store, at most once a second, so
// a token sealed by another instance under a newer key opens here. It
// reports whether a reload happened.
func (v *Vault) reloadKeys(ctx context.Context) bool {
	v.mu.Lock()
	if time.Since(v.lastRld) < time.Second {
		v.mu.Unlock()
		return false
	}
	v.lastRld = time.Now()
	v.mu.Unlock()
	sys, err := loadOrCreateSystemKeys(ctx, v.st, v.kek)
	if err != nil {
		return false
	}
	return v.installKeys(sys) == nil
}
