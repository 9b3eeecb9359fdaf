// Package keysinprod is the section "Keys in production" of docs/keys.md, run as a
// test: a vault moves from the quickstart's local keyset to AWS KMS (local-kms
// standing in) and then to an HSM (SoftHSM2), and every document survives.
// It also holds the KEK benchmarks (rewrap rate, KMS round-trip cost).
package keysinprod
