package vault_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

// Rotating the token key on a schedule retires keys that can no longer
// open a valid token; after a suspected leak, Revoke retires every older
// key at once (outstanding tokens stop opening everywhere within 10 s).
func ExampleVault_RotateTokenKey() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "idvault-example")
	defer os.RemoveAll(dir)
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	kek, err := kms.CreateLocal(filepath.Join(dir, "kek"), []byte("demo passphrase: not for production"), kms.LocalOptions{})
	if err != nil {
		log.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)
	by := vault.Actor{Principal: "secops-oncall", Reason: "token key may have leaked (INC-4711)"}
	if err := v.RotateTokenKey(ctx, by, vault.RotateOptions{Revoke: true}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rotated and revoked")
	// Output: rotated and revoked
}
