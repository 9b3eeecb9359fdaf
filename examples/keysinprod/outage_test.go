package keysinprod

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

// TestKMSKeyDisabledDestroysNothing: with the vault's AWS KMS key disabled
// (local-kms), Grant, Delete and a Sweep past every deadline fail as an
// outage, never as tampering, and destroy nothing: once the key is enabled
// again every document, the held one included, is still there.
func TestKMSKeyDisabledDestroysNothing(t *testing.T) {
	ctx := context.Background()
	srv := localkms.Start(t)
	kek, uri := srv.NewKEK(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	// The store's clock moves with the vault's (the vault refuses to
	// sweep while they disagree).
	st, err := fsstore.OpenWithOptions(t.TempDir(), fsstore.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	scan := []byte{0xFF, 0xD8, 0xFF, 0xE0, 9, 9}
	var ids []string
	for range 4 {
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "m"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	by := vault.Actor{Principal: "ops"}
	if err := v.Admin().Hold(ctx, ids[0], by); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetEnabled(ctx, uri, false); err != nil {
		t.Fatal(err)
	}
	outage := func(what string, err error) {
		t.Helper()
		if err == nil || !errors.Is(err, kms.ErrUnavailable) || errors.Is(err, vault.ErrTampered) {
			t.Fatalf("%s with the KMS key disabled: %v", what, err)
		}
	}
	_, err = v.Grant(ctx, ids[1], vault.Access{Principal: "r", Purpose: "p"})
	outage("Grant", err)
	outage("Delete", v.Admin().Delete(ctx, ids[2], by))
	now.Add(int64(100 * time.Hour)) // every deadline has passed
	// Sweep skips what it cannot establish and says so; it destroys nothing.
	rep, err := v.Admin().Sweep(ctx, by)
	if err != nil || rep.Expired != 0 || rep.Unknown < len(ids) {
		t.Fatalf("Sweep with the KMS key disabled: %+v, %v; want every document skipped as unknown", rep, err)
	}

	if err := srv.SetEnabled(ctx, uri, true); err != nil {
		t.Fatal(err)
	}
	now.Add(-int64(100 * time.Hour))
	for _, id := range ids {
		if _, err := v.Grant(ctx, id, vault.Access{Principal: "r", Purpose: "p"}); err != nil {
			t.Fatalf("document %s after the outage: %v", id, err)
		}
	}
}
