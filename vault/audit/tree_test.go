package audit

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestFrontierMatchesTlog cross-checks the O(log n) frontier against
// tlog.TreeHash over a full hash store, for every size up to 1100.
func TestFrontierMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var f frontier
	if f.root() != (tlog.Hash{}) {
		t.Fatal("empty frontier root is not the zero hash")
	}
	for n := int64(0); n < 1100; n++ {
		data := []byte(fmt.Sprintf("record %d", n))
		hs, err := tlog.StoredHashes(n, data, reader)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		f.add(tlog.RecordHash(data))
		want, err := tlog.TreeHash(n+1, reader)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.root(); got != want {
			t.Fatalf("size %d: root %v, tlog.TreeHash %v", n+1, got, want)
		}
		if len(f.hashes) > 64 {
			t.Fatal("frontier grew beyond O(log n)")
		}
		if c := f.clone(); c.root() != want || c.n != f.n {
			t.Fatal("clone differs")
		}
	}
}
