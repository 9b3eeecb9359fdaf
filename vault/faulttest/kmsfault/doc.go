// Package kmsfault is the part of the vault's fault suite (vault/faulttest)
// that needs a real KMS: local-kms, the AWS KMS stand-in, SIGSTOPped and
// SIGKILLed while every public call of a vault runs
// (internal/deadlinetest). It is a module of its own so that the library's
// module never requires the AWS SDK; it holds tests only.
//
// Run it with LOCAL_KMS_BIN pointing at the local-kms binary (make test
// does); under CI=true a missing binary fails instead of skipping.
package kmsfault
