// Package faulttest is the vault's fault-injection suite; it holds tests
// only. They drive the public API from outside the package while the
// dependencies fail: a real MinIO server SIGKILLed and SIGSTOPped mid-Put
// and mid-Redeem, audit writes that fail or hang, a full disk (a small
// tmpfs when run as root, otherwise a store that answers ENOSPC), a KEK
// whose KMS is unreachable, failing or hanging, storage rolled back from a
// backup, a writer process SIGKILLed in a loop, and 256 connections
// flooding the Handler with bogus tokens while a reviewer works. Each test is bounded in
// time; the property checked is always the same: a clear typed error,
// nothing lost, nothing destroyed on a doubt, nothing served without its
// audit record, and every deadline kept.
//
// Run it with MINIO_BIN pointing at a minio server binary (make test does);
// under CI=true a missing binary fails the MinIO tests instead of skipping.
package faulttest
