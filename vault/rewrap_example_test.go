package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/vaulttest"
)

// Move a vault from one KEK to another. In production the new KEK is
// usually a KMS or HSM key (kms.Open with kms/awskms or kms/pkcs11); see
// docs/keys.md, "Keys in production".
func ExampleAdmin_Rewrap() {
	ctx := context.Background()
	oldKEK, newKEK := vaulttest.NewKEK(), vaulttest.NewKEK() // in production: kms.Open
	st := vaulttest.NewStore()
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: oldKEK})
	if err != nil {
		log.Fatal(err)
	}
	scan := []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3}
	if _, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"}); err != nil {
		log.Fatal(err)
	}
	v.Close(ctx)

	// Every instance opens both KEKs and wraps with the new one; then one
	// of them re-wraps what the old one wrapped.
	v, err = vault.Open(ctx, vault.Config{Store: st, KEK: newKEK, Storage: vault.StorageConfig{DecryptKEKs: []kms.KEK{oldKEK}}})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)
	rep, err := v.Admin().Rewrap(ctx, oldKEK, newKEK, vault.Actor{Principal: "alice@security", Reason: "yearly rotation"}, vault.RewrapOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("keyset %t, rewrapped %d, remaining under the old KEK %d\n", rep.Keyset, rep.Rewrapped, rep.Remaining)
	// Output:
	// keyset true, rewrapped 1, remaining under the old KEK 0
}
