//go:build cgo

package main

import "github.com/idvault/idvault/kms/pkcs11"

// PKCS#11 needs cgo; a CGO_ENABLED=0 build of the CLI opens local: and
// aws-kms:// KEKs only.
func init() {
	kekOpeners = append(kekOpeners, pkcs11.NewOpener(pkcs11.Options{}))
}
