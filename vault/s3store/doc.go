// Package s3store is a store.Store on MinIO or any S3-compatible service,
// through minio-go v7.
//
// A Store keeps its objects in one bucket, optionally under a key prefix so
// that several stores can share a bucket without seeing each other. It is
// safe for concurrent use by multiple goroutines.
//
// # Conditional writes
//
// Put with IfAbsent is one conditional PUT with "If-None-Match: *": the
// server decides atomically, so of any number of concurrent writers of one
// key (on any number of machines) exactly one succeeds; the others get an
// error wrapping store.ErrExists (HTTP 412 PreconditionFailed, or 409
// ConditionalRequestConflict on services that report a race that way).
//
// # Bodies
//
// A body of known size is streamed to the server in one PUT (never
// buffered, never split into a multipart upload, so a conditional write is
// decided by the server in one step); S3 limits such an object to 5 GiB.
// A body of unknown size (-1) is read in parts of PartSize (5 MiB): one part
// or less goes up as a single PUT, more as a multipart upload whose
// completion carries the same condition. Memory per Put in flight is at
// most one part, and the largest unknown-size object is 10,000 parts
// (about 48 GiB). A body that yields more or fewer bytes than declared makes
// Put fail with store.ErrSizeMismatch before the server commits anything;
// the last bytes of a known-size body are handed to the HTTP client only
// after the body has reported EOF, so an over-long body cannot be silently
// truncated into a committed object. A failed multipart upload is aborted.
//
// # Retention (object lock)
//
// New reads the bucket's object-lock configuration once. On a bucket without
// object lock, Put with RetainUntil fails with store.ErrRetentionUnsupported
// and writes nothing. On a bucket with object lock, Put with RetainUntil
// writes the object in COMPLIANCE mode (which not even the root account can
// lift early) until RetainUntil, rounded up to the next whole second because
// the S3 header carries seconds.
//
// Object-lock buckets are always versioned, so S3 itself would accept a
// plain PUT or DELETE of a retained key: the PUT would add a new version on
// top and the DELETE a delete marker, hiding the retained object without
// removing it. The store therefore enforces the contract itself on such
// buckets: a Put without IfAbsent, and every Delete, first reads the
// current version's retention (one HEAD) and fail with store.ErrRetained
// while it holds (compliance or governance mode, or a legal hold). Between
// that HEAD and the write there is a window in which a concurrent writer can
// create a retained object that the write then covers (it stays stored,
// locked, as an older version); retained objects that must never be covered
// are written with IfAbsent, which has no such window.
//
// # Delete and versioning
//
// On an object-lock bucket, Delete removes the current version of the key
// permanently (by version ID), then any older versions that surface, so the
// bytes are really gone once retention allows it; a version that is still
// retained stops it with store.ErrRetained.
//
// On a bucket with plain versioning (no object lock), Delete is an ordinary
// S3 DELETE: it leaves a delete marker and keeps every older version, so the
// data survives until a lifecycle rule removes it. That is acceptable for
// ciphertext but not for key records, whose deletion is what shreds an
// object: keep key records in a bucket without versioning. Versioned reports
// which kind of bucket a store is on.
//
// # Expiry backstop and legal hold
//
// SetExpiryRule installs a lifecycle rule that expires objects under a
// prefix days after they were written, but only those tagged ExpiryTag=yes
// (S3 filters can require a tag, not its absence). Put writes that tag in
// the same request when PutOptions.Expirable is set (the vault sets it on
// payloads), and SetExpirable (store.ExpiryTagger) switches it to "no" and
// back: the vault does so on Hold and Release, so the rule never deletes a
// document under legal hold. Tags are metadata; changing them is allowed
// under object lock and adds no version. The credentials need
// s3:PutObjectTagging for this.
//
// # Listing
//
// List pages lazily through ListObjectsV2 (1,000 keys per request), in the
// lexical order S3 returns. Objects under the store's prefix whose names are
// not valid store keys (written by other tools, such as "dir/" markers) are
// skipped, since no Store method could address them.
package s3store
