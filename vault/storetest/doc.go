// Package storetest is the conformance suite for store.Store
// implementations: every backend (the filesystem store, the S3 store, the
// in-memory test store) runs the same tests, so the vault above the
// interface can rely on one contract.
//
// A backend's test calls Run with a constructor that returns a fresh,
// empty store for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := fsstore.Open(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite checks atomic and create-only writes (including 32 concurrent
// IfAbsent writers of one key), size checks, failing and cancelled bodies,
// lexical List order across more than 1,000 keys, key validation,
// idempotent Delete, retention (RetainUntil) and concurrent use. It never
// sleeps; retention is checked only before its date, one hour ahead, so a
// backend with real object lock keeps those objects for that hour.
package storetest
