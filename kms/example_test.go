package kms_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idvault/idvault/kms"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// A local keyset file protected by a passphrase: create it once, open it at
// every start, wrap and unwrap data keys bound to their object.
func ExampleCreateLocal() {
	dir, err := os.MkdirTemp("", "kms-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek.keyset")
	passphrase := []byte("read me from a secret store, not from source code")

	// Zero LocalOptions: argon2id t=3, 64 MiB, 4 threads.
	if _, err := kms.CreateLocal(path, passphrase, kms.LocalOptions{}); err != nil {
		log.Fatal(err)
	}
	kek, err := kms.OpenLocal(path, passphrase)
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	ad := []byte("object 3f9a… metadata")
	wrapped, err := kek.Encrypt(ctx, dataKey, ad)
	if err != nil {
		log.Fatal(err)
	}
	unwrapped, err := kek.Decrypt(ctx, wrapped, ad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(unwrapped) == string(dataKey))

	// Other associated data (another object) does not open it.
	_, err = kek.Decrypt(ctx, wrapped, []byte("object 77c0… metadata"))
	fmt.Println(err)

	// A second CreateLocal never overwrites the keyset.
	_, err = kms.CreateLocal(path, passphrase, kms.LocalOptions{})
	fmt.Println(err)
	// Output:
	// true
	// kms: decryption failed
	// kms: keyset file already exists
}

// Any Tink AEAD becomes a KEK. In production it comes from a Tink KMS
// client, e.g. client.GetAEAD("gcp-kms://…"); here it is an in-process
// AES-256-GCM keyset.
func ExampleFromAEAD() {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		log.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		log.Fatal(err)
	}
	kek := kms.FromAEAD("in-process://example", a)

	ctx := context.Background()
	wrapped, err := kek.Encrypt(ctx, []byte("32-byte data key goes here......"), []byte("object metadata"))
	if err != nil {
		log.Fatal(err)
	}
	dataKey, err := kek.Decrypt(ctx, wrapped, []byte("object metadata"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kek.ID(), len(dataKey))
	// Output: in-process://example 32
}

// Rotation adds a new primary key; what was wrapped before still opens.
func ExampleLocal_Rotate() {
	dir, err := os.MkdirTemp("", "kms-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek.keyset")
	passphrase := []byte("example passphrase")
	// Cheap parameters keep the example fast; use LocalOptions{} in production.
	kek, err := kms.CreateLocal(path, passphrase, kms.LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	old, err := kek.Encrypt(ctx, []byte("data key"), nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := kek.Rotate(); err != nil {
		log.Fatal(err)
	}
	reopened, err := kms.OpenLocal(path, passphrase)
	if err != nil {
		log.Fatal(err)
	}
	dataKey, err := reopened.Decrypt(ctx, old, nil)
	fmt.Println(string(dataKey), err, reopened.ID() == kek.ID())
	// Output: data key <nil> true
}

// An adapter for a key service of your own decides between ErrUnavailable
// (the service did not answer: nothing is known about the ciphertext) and
// ErrDecrypt (the ciphertext does not authenticate) with IsUnavailable.
func ExampleIsUnavailable() {
	timeout := fmt.Errorf("hsm: %w", context.DeadlineExceeded)
	authFailure := fmt.Errorf("hsm: tag mismatch")
	for _, err := range []error{timeout, authFailure} {
		if kms.IsUnavailable(err) {
			fmt.Println("unavailable: refuse, destroy nothing")
		} else {
			fmt.Println("decrypt failed: a verdict on the ciphertext")
		}
	}
	// Output:
	// unavailable: refuse, destroy nothing
	// decrypt failed: a verdict on the ciphertext
}
