package pkcs11_test

import (
	"context"
	"log"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/pkcs11"
)

// Open an AES key in an HSM as a KEK; the PIN comes from a named source,
// never from the URI.
func ExampleNewOpener() {
	kek, err := kms.Open(context.Background(), "pkcs11:token=idvault;object=kek-2026?module-path=/usr/lib/softhsm/libsofthsm2.so",
		kms.OpenOptions{Openers: []kms.Opener{pkcs11.NewOpener(pkcs11.Options{PIN: kms.PassphraseFile("/etc/idvault/hsm.pin")})}})
	if err != nil {
		log.Fatal(err)
	}
	_ = kek // vault.Config{KEK: kek, …}
}
