package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

func testGetAbsent(t *testing.T, s store.Store) {
	mustPut(t, s, "ga/dir/obj", payload(1, 10))
	mustPut(t, s, "ga/abc", payload(2, 10))
	for _, key := range []string{
		"never-written",
		"ga/dir",         // a "directory" of another key is not an object
		"ga/ab",          // a prefix of a key is not an object
		"ga/abcd",        // nor is a key that extends one
		"ga/abc/x",       // nor a "child" of an object
		"ga/dir/obj/x",   // nor of a nested one
		"ga/dir/obj.tmp", // nor a sibling name a backend might use for temporaries
	} {
		checkAbsent(t, s, key)
	}
	if err := s.Delete(t.Context(), "ga/abc"); err != nil {
		t.Fatal(err)
	}
	checkAbsent(t, s, "ga/abc")
}

func testDelete(t *testing.T, s store.Store) {
	del := func(key string) {
		t.Helper()
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	del("never-written")
	del("never/written/either")

	sibling := payload(2, 20)
	mustPut(t, s, "d/a", payload(1, 10))
	mustPut(t, s, "d/b", sibling)
	mustPut(t, s, "d/sub/c", sibling)
	del("d/a")
	checkAbsent(t, s, "d/a")
	del("d/a") // twice
	checkAbsent(t, s, "d/a")
	checkObject(t, s, "d/b", sibling)

	// Deleting a "directory" name deletes nothing.
	del("d/sub")
	checkObject(t, s, "d/sub/c", sibling)
	del("d")
	checkObject(t, s, "d/b", sibling)

	// Deleting the last key under a prefix, then writing there again.
	del("d/sub/c")
	checkAbsent(t, s, "d/sub/c")
	if got := listAll(t, s, "d/sub"); len(got) != 0 {
		t.Fatalf("List(\"d/sub\") after deleting its only key yields %q", got)
	}
	mustPut(t, s, "d/sub/c", sibling)
	checkObject(t, s, "d/sub/c", sibling)
	if got := listAll(t, s, ""); len(got) != 2 {
		t.Fatalf("List(\"\") yields %q, want [d/b d/sub/c]", got)
	}
}

// invalidKeys are refused by Put, Get and Delete.
var invalidKeys = []string{
	"",
	"/",
	"/a",
	"a/",
	"a//b",
	"..",
	".",
	"../x",
	"./x",
	"a/../b",
	"a/./b",
	"a/..",
	".hidden",
	"a/.hidden",
	"a\x00b",
	"/etc/passwd",
	"/abs/path",
	`C:\x`,
	`a\b`,
	`..\x`,
	strings.Repeat("k", store.MaxKeyLen+1),
	strings.Repeat("k/", store.MaxKeyLen/2) + "k",
	"é",
	"a/ü",
	"\xff",
	"a b",
	"a\nb",
	"a\tb",
	"a:b",
	"a*",
	"a?b",
	"%2e%2e/x",
}

// invalidPrefixes are refused by List; "" and "a/" are valid prefixes.
var invalidPrefixes = []string{
	"/",
	"/a",
	"a//",
	"a//b",
	"..",
	"../x",
	"a/../b",
	".hidden",
	"a/.h",
	"a\x00b",
	"/etc/",
	`a\b`,
	strings.Repeat("k", store.MaxKeyLen+1),
	"é",
	"a b",
}

func testInvalidKeys(t *testing.T, s store.Store) {
	mustPut(t, s, "a/b", payload(1, 4))
	for _, key := range invalidKeys {
		for _, opts := range []store.PutOptions{{}, {IfAbsent: true}} {
			if err := put(t.Context(), s, key, payload(2, 4), opts); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Put(%q, IfAbsent=%t): err = %v, want store.ErrInvalidKey", key, opts.IfAbsent, err)
			}
		}
		if _, err := get(t.Context(), s, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Get(%q): err = %v, want store.ErrInvalidKey", key, err)
		}
		if err := s.Delete(t.Context(), key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Delete(%q): err = %v, want store.ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range invalidPrefixes {
		n, gotErr := 0, false
		for _, err := range s.List(t.Context(), prefix) {
			if gotErr {
				t.Errorf("List(%q) yielded after its error", prefix)
				break
			}
			if err != nil {
				if !errors.Is(err, store.ErrInvalidKey) {
					t.Errorf("List(%q): err = %v, want store.ErrInvalidKey", prefix, err)
				}
				gotErr = true
				continue
			}
			n++
		}
		if !gotErr || n != 0 {
			t.Errorf("List(%q) yielded %d keys and error=%t; want only store.ErrInvalidKey", prefix, n, gotErr)
		}
	}
	// Nothing was written by the refused calls, and the one object is intact.
	if got := listAll(t, s, ""); len(got) != 1 || got[0] != "a/b" {
		t.Fatalf("after refused writes List yields %q, want [a/b]", got)
	}
	checkObject(t, s, "a/b", payload(1, 4))
}
