package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

// orderKeys sort differently as full keys than in a naive directory walk
// ('-' and '.' sort before '/', '0' and '_' after it; upper case before
// lower case), so a backend that walks directories must sort carefully.
var orderKeys = []string{
	"a-c", "a/b", "a.b", "a_b", "a0", "a/c/d", "a/c-d", "a/c.d", "a/c0", "a/c_",
	"a/b-", "a/b0", "a/bb", "A", "Z", "_z", "-z", "0", "9", "z", "b/a/a/a", "ba",
	"b-/x", "b./x", "b_/x", "b0/x", "b/x/y-", "b/x/y/z", "b/x/y.z",
}

func putShuffled(t *testing.T, s store.Store, keys []string) {
	t.Helper()
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		mustPut(t, s, k, []byte(k))
	}
}

func testListOrder(t *testing.T, s store.Store) {
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Fatalf("List(\"\") of an empty store yields %q", got)
	}
	putShuffled(t, s, orderKeys)
	want := slices.Sorted(slices.Values(orderKeys))
	got := listAll(t, s, "")
	checkSorted(t, `List("")`, got)
	if !slices.Equal(got, want) {
		t.Fatalf("List(\"\") =\n%q\nwant\n%q", got, want)
	}
}

func testListPrefix(t *testing.T, s store.Store) {
	putShuffled(t, s, orderKeys)
	for _, prefix := range []string{
		"", "a", "a/", "a/b", "a/c", "a/c/", "a/c/d", "a.", "a-", "a_", "A", "b",
		"b/", "b/x/", "b/x/y", "b/x/y/", "b/a/a", "ba", "nothing", "zz/", "a/zz",
		"b/x/y/z/", "a/b/", "0", "_",
	} {
		var want []string
		for _, k := range slices.Sorted(slices.Values(orderKeys)) {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		got := listAll(t, s, prefix)
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testListMany(t *testing.T, s store.Store) {
	// More than 1,000 keys, so an S3 listing needs several pages.
	const n = 1100
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("many/%04d", i)
	}
	others := []string{"man", "many-", "manz/x", "many.x"}
	work := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			failed := false
			for k := range work { // drain even after a failure, so the sender never blocks
				if failed {
					continue
				}
				if err := put(t.Context(), s, k, nil, store.PutOptions{}); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", k, err)
					failed = true
				}
			}
		})
	}
	for _, i := range rand.New(rand.NewPCG(3, 4)).Perm(n) {
		work <- keys[i]
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, k := range others {
		mustPut(t, s, k, nil)
	}

	got := listAll(t, s, "many/")
	if !slices.Equal(got, keys) {
		t.Fatalf("List(\"many/\") yields %d keys (first difference matters), want the %d written in order", len(got), n)
	}
	all := listAll(t, s, "")
	checkSorted(t, `List("")`, all)
	if len(all) != n+len(others) {
		t.Fatalf("List(\"\") yields %d keys, want %d", len(all), n+len(others))
	}
	if got := listAll(t, s, "many/1"); len(got) != 100 || got[0] != "many/1000" {
		t.Fatalf("List(\"many/1\") yields %d keys, want 100 from many/1000", len(got))
	}

	// Breaking out of the loop early (also at page boundaries) stops the
	// iteration: the range-over-func runtime panics if a backend keeps
	// calling yield after it returned false.
	for _, stop := range []int{1, 2, 999, 1000, 1001, n - 1} {
		var seen []string
		for k, err := range s.List(t.Context(), "many/") {
			if err != nil {
				t.Fatalf("List(\"many/\"): %v", err)
			}
			seen = append(seen, k)
			if len(seen) == stop {
				break
			}
		}
		if !slices.Equal(seen, keys[:stop]) {
			t.Fatalf("List(\"many/\") broken off after %d keys yielded %d keys or the wrong ones", stop, len(seen))
		}
	}
}

// testListWhileDeleting is how a sweeper works: it deletes each key as
// List yields it. Every key must be yielded exactly once and in order,
// even where a backend prunes directories that become empty.
func testListWhileDeleting(t *testing.T, s store.Store) {
	var keys []string
	for h := range 4 {
		for id := range 5 {
			keys = append(keys, fmt.Sprintf("sweep/h%d/id%d", h, id))
		}
	}
	keys = append(keys, "sweep/h2-solo", "sweep/z/deep/er/key", "sweeq")
	putShuffled(t, s, keys)
	var seen []string
	for k, err := range s.List(t.Context(), "sweep/") {
		if err != nil {
			t.Fatalf("List while deleting, after %d keys: %v", len(seen), err)
		}
		seen = append(seen, k)
		if err := s.Delete(t.Context(), k); err != nil {
			t.Fatalf("Delete(%q) during List: %v", k, err)
		}
	}
	want := slices.Sorted(slices.Values(keys))
	want = want[:len(want)-1] // not "sweeq"
	if !slices.Equal(seen, want) {
		t.Fatalf("List while deleting yielded %q, want %q", seen, want)
	}
	if got := listAll(t, s, ""); !slices.Equal(got, []string{"sweeq"}) {
		t.Fatalf("after deleting every listed key List(\"\") yields %q, want [sweeq]", got)
	}
}
