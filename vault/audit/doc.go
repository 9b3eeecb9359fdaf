// Package audit is idvault's tamper-evident audit log: records of every
// access and refusal, written before any plaintext leaves the vault, and the
// tools a security team uses to check and query them.
//
// # Writing
//
// An Appender writes one log through a store.Store. Concurrent Append calls
// share one durable write (group commit); Append returns only once its
// record is durable, and otherwise an error wrapping ErrUnavailable, on
// which the vault refuses to serve (fail closed). Records hold identifiers
// and labels only: object and token IDs, principals, purposes, keyed
// hashes of subjects; never document bytes, tokens, keys or raw subject
// identifiers.
//
// # Storage layout
//
//	audit/<log>/<first seq, 20 digits>               a batch of records (create-only, write-once with RetainFor)
//	audit/<log>/checkpoints/<size, 20 digits>        a signed checkpoint of the first size records
//	audit/<log>/checkpoints/<size, 20 digits>-final  the checkpoint written by Close
//
// Each writer (vault instance) writes its own log, named by a random
// 128-bit ID. The records of a log are the leaves of a Merkle tree in the
// shape of golang.org/x/mod/sumdb/tlog (RFC 6962): the leaf hash is
// tlog.RecordHash of a record's MarshalBinary bytes, and tree hashes equal
// tlog.TreeHash. Checkpoints are notes (golang.org/x/mod/sumdb/note) signed
// with an Ed25519 key from GenerateKey, naming the log, the tree size, the
// tree hash and the time.
//
// # Checking
//
// Verify reads every log, streams its records and checks them against
// every checkpoint, reporting the first problem of each log by class:
// corrupt bytes, edited, deleted, reordered, duplicated or inserted
// records, truncation, records past the final checkpoint, bad or foreign
// signatures, rolled-back or forked checkpoints. Passing the trees of an
// earlier run (VerifyOptions.Trusted) also catches a log rolled back as a
// whole. Records after the last checkpoint of a live log are reported as an
// unsealed tail: the log cannot vouch for them yet.
//
// Scan yields records filtered by time, principal, object, event, outcome
// or log, in (log, seq) order, without verifying them.
package audit
