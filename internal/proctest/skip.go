package proctest

import (
	"os"
	"testing"
)

// SkipUnlessCI skips tb, saying msg (what is missing and how to install
// it), except under CI=true, where every server and tool the tests need is
// installed and a missing one fails tb instead of hiding its tests.
func SkipUnlessCI(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " (CI=true: missing is a failure, not a skip)")
	}
	tb.Skip(msg)
}
