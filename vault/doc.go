// Package vault keeps identity-document images (driver's licences,
// passports, insurance cards uploaded for age verification) encrypted,
// hands them out only through short-lived, single-use tokens bound to one
// principal and one document, deletes them on schedule, and records every
// access in a tamper-evident audit log before a single byte leaves.
//
// The flow is Put → Grant → Redeem (or Handler, which serves Redeem over
// HTTP), then Decide. The words are defined in docs/glossary.md:
//
//   - Put streams a document through encryption under a fresh per-object
//     data key, wrapped by a key-encryption key (package kms) that never
//     touches the storage. Only JPEG, PNG, WebP, HEIC/HEIF and PDF are
//     accepted, by their magic bytes. Document IDs are 128 random bits.
//   - Grant issues an opaque token ("idv1_…") sealed with the vault's token
//     key: valid 60 s by default (at most Config.Access.MaxGrantTTL; longer is
//     refused), for one document, one principal and one purpose.
//   - Redeem checks the seal, the expiry, the requester, the document and
//     the first 16 KiB of its plaintext, then spends the token with one
//     create-only write to the store, its ledger entry, that also carries
//     the signed release record (so a replay fails on every instance, and
//     nothing is released without a durable record), and only then streams
//     the plaintext. The record is folded into the audit log in the
//     background.
//   - Decide records a reviewer's verdict: Approved and Rejected delete the
//     document at once, HandedOn keeps it for someone else.
//
// Documents expire 72 hours after upload by default (Config.Retention.Period) and
// are refused from then on, whether or not anything has been deleted yet.
//
// # Storage
//
// A Vault keeps everything in a store.Store: a local directory
// (vault/fsstore, the embedded default) or MinIO/S3 (vault/s3store). The
// layout: blobs/<id> (the payload), index/... (expiry and subject markers),
// keys/<id> (the key record: the wrapped data key; written after the
// indexes that lead Sweep to it, and the object is readable only once both
// it and the payload exist),
// redeemed/<token-id> (the single-use ledger: each entry the signed release
// record), ledger-folded/... and ledger-adopt/... (ledger bookkeeping),
// audit/<log>/... (the audit log) and system/... (the vault's own keyset,
// wrapped by the KEK, and token-key rotation times). Vault
// instances keep no state of their own, so any number may share one store.
//
// Open takes a Config whose required fields are Store and KEK; the rest is
// grouped by concern (Storage, Retention, Access, Detection, Audit,
// Observability), and every zero value is the safe default.
//
// # Operations
//
// The administrative calls are methods of Admin (v.Admin()), apart from the
// everyday path. Sweep (or Config.Retention.SweepEvery) deletes what is
// past its expiry, shredding the key record first; Delete, EraseSubject and
// Hold/Release act on one document or one subject; ListSubject answers a
// subject-access request. Every administrative call takes an Actor,
// recorded in the audit log. Config.Observability.Logger and
// Config.Observability.MeterProvider (OpenTelemetry) report sweeps, alerts,
// refusals and audit failures, derived from the audit records themselves;
// Config.Audit.RequireWriteOnce makes Open refuse a store where the audit
// log could be deleted.
//
// # Abuse defences
//
// Every grant, redemption, decision and refused token is counted per
// principal in a Limiter shared by every instance (the store by default,
// or Redis: vault/redislimiter), against short and long windows, views
// left undecided, decisions beyond views and hand-ons. By default a
// principal that raises an alert is frozen (ErrFrozen) until Unfreeze;
// Config.Detection.AlertOnly opts out. The vault plants canaries among the uploads on
// their own rhythm; MixCanaries lists them, and touching one alerts. See
// docs/abuse.md.
//
// # Errors
//
// Errors wrap the package's sentinels (ErrNotFound, ErrTokenReplayed, …):
// match them with errors.Is. No error carries a token, a key, image bytes
// or a raw subject ID. A failed dependency is named: ErrStoreUnavailable
// (ErrStoreFull for a full disk), ErrKEKUnavailable, ErrAuditUnavailable.
//
// # Deadlines
//
// Every call returns by its context's deadline plus DeadlineMargin,
// whatever the store, the KMS or the audit store do (hang, die, fail
// mid-call): what must outlive the call (the record of its failure, the
// removal of what it wrote) runs bounded in the background, and Close
// waits for it only up to its own context. The failure behaviour, outage
// by outage and with its tests, is in docs/failures.md.
package vault
