//go:build !unix

package fsstore

import (
	"os"
	"time"
)

// tempGrace: without file locks, only an old file is surely abandoned.
const tempGrace = 24 * time.Hour

func lockTemp(*os.File) {}

func tempAbandoned(_ string, mod, now time.Time) bool { return now.Sub(mod) >= tempGrace }
