// Package fsstore is a store.Store on a local directory: the embedded
// default backend for one machine.
//
// Each key is a file under the directory (key "blobs/ab12" is the file
// dir/blobs/ab12), so the tree can be inspected, backed up and restored
// with ordinary tools. Files are created 0600 and directories 0700.
//
// # Atomic writes
//
// Put streams the body into a temporary file in the private directory
// dir/.tmp, fsyncs it, then makes it visible in one step: rename(2) for a
// plain Put, link(2) for Put with IfAbsent. link fails with EEXIST if the
// key exists, atomically, so of any number of IfAbsent writers of one key,
// in one process or in several processes sharing the directory, exactly one
// succeeds. The parent directory is then fsynced. A crash, a failing or
// short body, or a cancelled context never leaves a partial object under a
// key; at worst a temporary file remains in dir/.tmp, and Open removes
// those older than a day. Names starting with '.' are unreachable by any
// valid key, so dir/.tmp and dir/.retain never appear in List.
//
// Delete removes the directories it leaves empty (an index directory per
// hour must not pile up forever); Put retries when such a prune races it.
//
// # Retention (best effort)
//
// A filesystem cannot make a file write-once against its owner, so
// PutOptions.RetainUntil is enforced only against callers that go through a
// Store: the date is written to a sidecar file under dir/.retain before the
// object becomes visible, and Delete and overwriting Put consult it and fail
// with store.ErrRetained before that date. Anyone with write access to the
// directory can still remove the files. Among goroutines using one Store the
// check and the change are one step; between processes sharing a directory
// they are not (IfAbsent is, retention is not). Where write-once retention
// must hold against an administrator, use an S3 bucket with object lock.
//
// # No expiry of its own
//
// A directory deletes nothing on its own schedule: only the vault's Sweep
// deletes expired documents. So PutOptions.Expirable is ignored, and Store
// does not implement store.ExpiryTagger (a legal hold has no store-side
// mark to change here).
//
// # Limits
//
// The filesystem must be case-sensitive (keys "a" and "A" are distinct);
// Open refuses a directory where they are not. A key segment may be at
// most 255 bytes long (the usual NAME_MAX); longer segments are refused
// with store.ErrInvalidKey. A key cannot be both an object and the
// directory of other keys ("a" and "a/b"), which S3 allows; such a Put
// fails with ErrKeyConflict. The vault's own key layout never does this.
//
// A Store is safe for concurrent use by multiple goroutines, and several
// processes may share one directory.
package fsstore
