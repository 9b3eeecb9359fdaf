package kektest

import (
	"testing"

	"github.com/idvault/idvault/kms"
)

// filePassphrase opens the keysets CreateFile writes: a test's, not a secret.
const filePassphrase = "kektest: a test passphrase, not a secret"

// cheap are argon2id parameters fit for tests only: a keyset file opens
// in a millisecond, so a child process can open it each time it starts.
var cheap = kms.LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1}

// CreateFile writes a new passphrase-protected kms.Local keyset at path
// and returns its KEK: one KEK that a test and the child processes it
// starts (which open it with OpenFile) share.
func CreateFile(tb testing.TB, path string) kms.KEK {
	tb.Helper()
	kek, err := kms.CreateLocal(path, []byte(filePassphrase), cheap)
	if err != nil {
		tb.Fatal(err)
	}
	return kek
}

// OpenFile opens the KEK CreateFile wrote at path; it is for child
// processes, which have no testing.TB.
func OpenFile(path string) (kms.KEK, error) {
	return kms.OpenLocal(path, []byte(filePassphrase))
}
