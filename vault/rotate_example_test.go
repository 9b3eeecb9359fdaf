package vault_test

import (
	"context"
	"fmt"
	"log"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/vaulttest"
)

// Rotating the token key on a schedule retires keys that can no longer
// open a valid token; after a suspected leak, Revoke retires every older
// key at once (outstanding tokens stop opening everywhere within 10 s).
func ExampleAdmin_RotateTokenKey() {
	ctx := context.Background()
	// In production: fsstore or s3store, and a KEK from a KMS (see Example).
	v, err := vault.Open(ctx, vault.Config{Store: vaulttest.NewStore(), KEK: vaulttest.NewKEK()})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)
	by := vault.Actor{Principal: "secops-oncall", Reason: "token key may have leaked (INC-4711)"}
	if err := v.Admin().RotateTokenKey(ctx, by, vault.RotateOptions{Revoke: true}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rotated and revoked")
	// Output: rotated and revoked
}
