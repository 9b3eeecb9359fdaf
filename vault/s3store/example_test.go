package s3store_test

import (
	"context"
	"log"
	"os"
	"strings"
	"time"

	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// Dial a bucket, write an object that nobody can overwrite, and read it back.
// (Compiled, not run: it needs a server.)
func ExampleDial() {
	ctx := context.Background()
	s, err := s3store.Dial(ctx, s3store.Config{
		Endpoint:        "minio.internal:9000",
		AccessKeyID:     os.Getenv("S3_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("S3_SECRET_ACCESS_KEY"),
		Bucket:          "idvault-audit", // created with object lock
		UseTLS:          true,
		Prefix:          "prod",
	})
	if err != nil {
		log.Fatal(err)
	}
	body := "an audit batch"
	err = s.Put(ctx, "audit/log-1/000001", strings.NewReader(body), int64(len(body)), store.PutOptions{
		IfAbsent:    true,
		RetainUntil: time.Now().Add(400 * 24 * time.Hour),
	})
	if err != nil {
		log.Fatal(err)
	}
	rc, err := s.Get(ctx, "audit/log-1/000001")
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
}
