package s3store_test

import (
	"os"
	"testing"

	"github.com/idvault/idvault/internal/miniotest"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
