package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
)

// scan stands in for an uploaded ID image (any JPEG, PNG, WebP, HEIC or PDF).
var scan = append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 4096)...)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "idvault-example")
	defer os.RemoveAll(dir)

	// The embedded default: a local directory and a passphrase-protected keyset.
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

	// A member uploads an ID image: encrypted, deleted after 72 h by default.
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42", Kind: "drivers-license"})
	if err != nil {
		log.Fatal(err)
	}

	// A reviewer gets a single-use token, valid 60 s, for this document only.
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler(vault.HandlerOptions{
		Principal: func(r *http.Request) (string, error) { return "reviewer-7", nil }, // your session auth here
	}))
	defer srv.Close()

	for range 2 {
		resp, err := http.Get(srv.URL + "/" + g.Token)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Output:
	// 200 image/jpeg
	// 404 text/plain; charset=utf-8
}
