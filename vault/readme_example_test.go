package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

// The everyday path, as the README shows it (internal/docs checks that the
// README's block is the text between BEGIN README and END README): Put,
// Grant, Redeem once, Decide.
func Example_everydayPath() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "idvault-example")
	defer os.RemoveAll(dir)
	upload, size := bytes.NewReader(scan), int64(len(scan))
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}

	// BEGIN README
	// The embedded default: a directory and a passphrase-protected keyset (see docs/keys.md).
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	check(err)
	kek, err := kms.CreateLocal(filepath.Join(dir, "kek"), []byte("demo passphrase: not for production"), kms.LocalOptions{})
	check(err)
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	check(err)
	defer v.Close(ctx)

	// A member uploads an ID image: encrypted, shredded 72 h later by default.
	info, err := v.Put(ctx, vault.Document{Body: upload, Size: size, Subject: "member-42", Kind: "drivers-license"})
	check(err)

	// A reviewer gets a token: single use, 60 s, this document and this reviewer only.
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	check(err)
	img, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"}) // or HTTP: v.Handler
	check(err)
	io.Copy(io.Discard, img) // shown to the reviewer
	img.Close()
	_, _, err = v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"})
	fmt.Println("second redemption refused:", errors.Is(err, vault.ErrTokenReplayed))

	// The reviewer decides: the image is deleted now, the outcome is in the audit log.
	err = v.Decide(ctx, info.ID, vault.Decision{Verdict: vault.Approved, Note: "over 18"}, vault.Actor{Principal: "reviewer-7"})
	fmt.Println("decided:", err)
	// END README

	// Output:
	// second redemption refused: true
	// decided: <nil>
}
