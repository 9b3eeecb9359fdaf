//go:build unix

package fsstore

import (
	"os"
	"syscall"
	"time"
)

// tempGrace is how old an unlocked temporary file must be before Open
// removes it. Its writer locks it right after creating it and holds the
// lock until the file is placed or removed, so an unlocked file older than
// this was left by a process that died (the kernel drops its locks).
const tempGrace = time.Minute

// lockTemp takes the writer's exclusive lock on a temporary file it has
// just created.
func lockTemp(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// tempAbandoned reports whether no live writer holds the temporary file at
// path (of modification time mod) and it is past tempGrace.
func tempAbandoned(path string, mod, now time.Time) bool {
	if now.Sub(mod) < tempGrace {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	// Our own lock on a second open file description: it fails while the
	// writer (in this process or another) holds its lock.
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
