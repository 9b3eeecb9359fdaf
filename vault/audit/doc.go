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
//	audit/<log>/<first seq, 20 digits>                a batch of records (create-only, write-once with RetainFor)
//	audit/<log>/checkpoints/<size, 20 digits>         a signed checkpoint of the first size records
//	audit/<log>/checkpoints/<size, 20 digits>-final   the checkpoint written by Close
//	audit/<log>/checkpoints/<size, 20 digits>-reopen  signed permission to continue a closed log
//	audit/_registry/<log>                             the log's signed registry entry, written before its first record
//	audit/_lease/<log>/<generation, 20 digits>        who writes the log until when (signed; deletable)
//	audit/_state/<seq, 20 digits>                     the state chain: holds, releases, freezes (see StateEntry)
//
// Each writer (vault instance) writes its own log at a time, named by a
// random 128-bit ID. A new Appender continues an idle log (closed, or whose
// writer stopped renewing its lease) rather than starting one, so the
// number of logs follows the number of concurrent writers, not restarts. The records of a log are the leaves of a Merkle tree in the
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
// signatures, rolled-back or forked checkpoints, logs that are not
// registered, registered logs that are gone, and logs nobody signed long
// after a writer would have. It holds each log to what anything signed
// says about it: its latest lease (a signed frontier; a release at a final
// size), and the witness records (EventWitness) other instances write in
// the checkpointed part of their own logs, so a log truncated or deleted
// as a whole is caught without any memory of earlier runs. It reads the
// state chain whole and holds it to every state-head witness record.
// Passing the trees, final sizes and chain head of an earlier run
// (VerifyOptions.Trusted, Finals, State) also catches a store rolled back
// as a whole; Heads, LatestState, ParseHeads and ParseWitness carry signed
// heads to a witness outside the store and back. Records after the last
// checkpoint of a live log are reported as an unsealed tail: the log cannot
// vouch for them yet. docs/audit.md says what this proves, and what not.
//
// Scan yields records filtered by time, principal, object, event, outcome
// or log, in (log, seq) order; with Filter.Verified (Report.VerifiedSizes)
// only those a valid checkpoint covers.
//
// # Formats
//
// Every stored object is one of these, each versioned by its header or
// version byte and defined, byte for byte, in the doc comment named here.
// Signed formats are notes (golang.org/x/mod/sumdb/note) under the audit
// key; the text's first line names the format, so no signature made for
// one can pass for another.
//
//	record          binary, version byte 1: time, seq, 11 length-prefixed fields    Record.MarshalBinary
//	batch           "IDVB", version 1, count, length-prefixed records               batch.go
//	checkpoint      note "idvault audit checkpoint v1": log, size, tree hash, time  checkpoint.go
//	registry entry  note "idvault audit log v1": log, time                          registry.go
//	lease           note "idvault audit lease v1": holder, expiry, frontier         leasenote.go
//	state entry     note "idvault state v1": seq, prev hash, time, kind target      state.go
//	ledger entry    note "idvault ledger v1": token, expiry, release record         LedgerSigner.Sign
//	fold note       lines "<token-id> folded" or "<token-id> void"                  EncodeFolded
//	witness record  a Record (EventWitness) of FormatLogHead or FormatStateHead     state.go
//	witness file    signed checkpoints and state entries, blank-line separated      FormatHeads
//
// The single-use ledger is the set of ledger entries and fold notes: one
// entry per redeemed token, the release record that decided its single use.
//
// # Reading the verifier
//
// The formats, Verify, Scan and CheckLedger are in every file but four:
// appender.go, lease.go and bounded.go (the writer: Appender, its leases
// and its bounded store calls) and follow.go (the Follower, the vault's
// live reader). A test builds the package without those four, so what is
// checked can be read, and audited, without the writer: start at
// verify.go, then statecheck.go, heads.go and the format files above.
package audit
