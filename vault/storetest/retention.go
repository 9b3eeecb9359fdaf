package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// retainFor is how far ahead the suite retains objects. The suite checks
// only that retention holds before the date; each backend tests expiry
// itself with an injected clock rather than by sleeping.
const retainFor = time.Hour

func testRetention(t *testing.T, s store.Store) {
	data := payload(1, 300)
	until := time.Now().Add(retainFor)
	for _, ifAbsent := range []bool{false, true} {
		key := "ret/plain"
		if ifAbsent {
			key = "ret/ifabsent"
		}
		if err := put(t.Context(), s, key, data, store.PutOptions{IfAbsent: ifAbsent, RetainUntil: until}); err != nil {
			t.Fatalf("Put(IfAbsent=%t) with RetainUntil: %v", ifAbsent, err)
		}
		checkObject(t, s, key, data)

		if err := s.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("Delete of a retained object: err = %v, want store.ErrRetained", err)
		}
		checkObject(t, s, key, data)

		for _, opts := range []store.PutOptions{{}, {RetainUntil: until.Add(time.Hour)}} {
			if err := put(t.Context(), s, key, payload(2, 300), opts); !errors.Is(err, store.ErrRetained) {
				t.Fatalf("overwrite of a retained object: err = %v, want store.ErrRetained", err)
			}
			checkObject(t, s, key, data)
		}
		err := put(t.Context(), s, key, payload(3, 300), store.PutOptions{IfAbsent: true})
		if !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrRetained) {
			t.Fatalf("IfAbsent Put over a retained object: err = %v, want store.ErrExists or store.ErrRetained", err)
		}
		checkObject(t, s, key, data)

		// The refusals did not lift the retention.
		if err := s.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("second Delete of a retained object: err = %v, want store.ErrRetained", err)
		}
	}

	// Retention is per object: an unretained neighbour stays deletable.
	mustPut(t, s, "ret/neighbour", payload(4, 10))
	if err := s.Delete(t.Context(), "ret/neighbour"); err != nil {
		t.Fatalf("Delete of an unretained object beside retained ones: %v", err)
	}
	checkAbsent(t, s, "ret/neighbour")
	if got := listAll(t, s, "ret/"); !slices.Equal(got, []string{"ret/ifabsent", "ret/plain"}) {
		t.Fatalf("List(\"ret/\") = %q, want the two retained objects", got)
	}
}

func testRetentionUnsupported(t *testing.T, s store.Store) {
	until := time.Now().Add(retainFor)
	for _, ifAbsent := range []bool{false, true} {
		err := put(t.Context(), s, "ret/k", payload(1, 10), store.PutOptions{IfAbsent: ifAbsent, RetainUntil: until})
		if !errors.Is(err, store.ErrRetentionUnsupported) {
			t.Fatalf("Put(IfAbsent=%t) with RetainUntil on a store without retention: err = %v, want store.ErrRetentionUnsupported", ifAbsent, err)
		}
		checkAbsent(t, s, "ret/k")
	}
}
