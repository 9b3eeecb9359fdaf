package audit

import (
	"os"
	"testing"

	"github.com/idvault/idvault/internal/miniotest"
)

// TestMain stops the MinIO server the benchmarks may start.
func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
