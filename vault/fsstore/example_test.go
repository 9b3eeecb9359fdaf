package fsstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

func Example() {
	dir, err := os.MkdirTemp("", "fsstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := fsstore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// A single-use ledger entry: the second IfAbsent Put of a key fails.
	entry := store.PutOptions{IfAbsent: true}
	fmt.Println(s.Put(ctx, "redeemed/tok1", strings.NewReader(""), 0, entry))
	err = s.Put(ctx, "redeemed/tok1", strings.NewReader(""), 0, entry)
	fmt.Println(errors.Is(err, store.ErrExists))

	if err := s.Put(ctx, "blobs/obj1", strings.NewReader("ciphertext"), -1, store.PutOptions{}); err != nil {
		log.Fatal(err)
	}
	rc, err := s.Get(ctx, "blobs/obj1")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	fmt.Println(string(b))

	for key, err := range s.List(ctx, "") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(key)
	}
	// Output:
	// <nil>
	// true
	// ciphertext
	// blobs/obj1
	// redeemed/tok1
}
