package main

import "github.com/idvault/idvault/kms/awskms"

// The CLI is its own module, so it may link what a library user's program
// should not have to: AWS KMS always (region and credentials from the usual
// AWS configuration; AWS_ENDPOINT_URL_KMS for a VPC endpoint), and PKCS#11
// when built with cgo (openers_cgo.go).
func init() {
	kekOpeners = append(kekOpeners, awskms.NewOpener(awskms.Options{}))
}
