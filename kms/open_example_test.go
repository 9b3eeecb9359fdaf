package kms_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idvault/idvault/kms"
)

// Open a KEK by URI. local: needs a passphrase source; other schemes need
// an opener (kms/awskms, kms/pkcs11, or kms.FromTinkClient of any Tink
// KMS client), passed in, never registered globally.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "kms-open")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek")
	if _, err := kms.CreateLocal(path, []byte("demo passphrase"), kms.LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1}); err != nil {
		log.Fatal(err)
	}
	os.Setenv("DEMO_PASSPHRASE", "demo passphrase")
	ctx := context.Background()
	opts := kms.OpenOptions{Passphrase: kms.PassphraseEnv("DEMO_PASSPHRASE")}
	kek, err := kms.Open(ctx, "local:"+path, opts)
	if err != nil {
		log.Fatal(err)
	}
	ct, _ := kek.Encrypt(ctx, []byte("data key"), []byte("ad"))
	pt, _ := kek.Decrypt(ctx, ct, []byte("ad"))
	fmt.Println(string(pt))

	_, err = kms.Open(ctx, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k", opts)
	fmt.Println(err)
	// Output:
	// data key
	// kms: open aws-kms: no opener given for this scheme: kms: unsupported KEK URI
}
