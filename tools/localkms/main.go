// Command local-kms runs local-kms (github.com/nsmithuk/local-kms), the AWS
// KMS stand-in the kms/awskms tests use, listening on 127.0.0.1 only.
//
// local-kms itself listens on every interface (":" + PORT) and has no
// option to change that; this command builds the same server from its
// packages, at the same pinned version, on a loopback listener. It reads
// the same environment: PORT (0 picks a free port, printed on stderr),
// KMS_ACCOUNT_ID, KMS_REGION and KMS_DATA_PATH. Seeding (KMS_SEED_PATH) is
// not supported: the tests create their keys through the API.
//
// Build it with `make tools` (into ./bin/local-kms); it is a module of its
// own, outside the workspace, so its dependencies reach no idvault build.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

func main() {
	config.AWSAccountId = env("KMS_ACCOUNT_ID", "111122223333")
	config.AWSRegion = env("KMS_REGION", "eu-west-2")
	dataPath, err := filepath.Abs(env("KMS_DATA_PATH", filepath.Join(os.TempDir(), "local-kms")))
	if err != nil {
		log.Fatal(err)
	}
	config.DatabasePath = dataPath
	db := data.NewDatabase(config.DatabasePath)
	defer db.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", env("PORT", "8080")))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "Local KMS started on %s\n", ln.Addr())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			src.HandleRequest(w, r, db)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Fatal(srv.Serve(ln))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
