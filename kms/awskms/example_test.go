package awskms_test

import (
	"context"
	"log"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms"
)

// Open an AWS KMS key as a KEK, with the SDK's default credentials (or
// Options.KMS for a client of your own, Options.Endpoint for a VPC
// endpoint).
func ExampleNewOpener() {
	kek, err := kms.Open(context.Background(), "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		kms.OpenOptions{Openers: []kms.Opener{awskms.NewOpener(awskms.Options{})}})
	if err != nil {
		log.Fatal(err)
	}
	_ = kek // vault.Config{KEK: kek, …}
}
