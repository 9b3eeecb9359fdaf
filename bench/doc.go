// Command bench is idvault's performance harness. It compares the library with
// the plain alternatives a developer would otherwise write, in one run on one
// machine, and prints the ratios beside the project's targets:
//
//	go run ./bench [-quick] [-only put,redeem,crypto,memory,audit] [-out bench/results.json]
//	               [-cpuprofile cpu.out] [-memprofile mem.out] [-tracestore]
//
// It starts a MinIO server on loopback (the binary is found like the tests
// find it: $MINIO_BIN, minio on PATH, <module root>/bin/minio), then runs:
//
//   - put: idvault Put (s3store) of 256 KiB, 1 MiB, 5 MiB and 20 MiB against
//     minio-go PutObject of the same bytes, and against age (X25519
//     recipient) encryption streamed into PutObject. A PutObject with
//     If-None-Match: * (create-only, as the vault writes) shows what the
//     condition alone costs.
//   - redeem: idvault Grant+Redeem (token, ledger, audit, decryption; the whole
//     body read) against GetObject, an HTTP GET of a presigned URL and the
//     floors single use with a durable release record cannot beat (a
//     create-only PUT of a 600-byte object; that PUT then the GetObject;
//     two of them then the GetObject), at concurrency 1 and 8, for 4 KiB,
//     1 MiB and 5 MiB. A second vault counts its quotas in redislimiter on
//     a redis-server the harness starts on 127.0.0.1 (skipped, with a line
//     saying so, when redis-server is absent outside CI=true).
//   - crypto: the payload's streaming encryption and decryption
//     (internal/envelope) against one crypto/aes GCM Seal/Open of the whole
//     buffer into a reused buffer: the physical limit.
//   - memory: peak RSS of one 100 MiB Put and one 100 MiB Redeem, each in a
//     child process (this binary re-executed) so that the parent's heap does
//     not count; the body comes from a generator, never from a 100 MiB slice.
//     PutObject and GetObject of the same size are measured the same way for
//     reference.
//   - audit: durable appends per second with 1, 8 and 64 concurrent writers
//     on fsstore and on s3store, beside a plain write+fsync per record.
//
// Contenders of one case alternate iteration by iteration, in rotating order,
// so that machine noise hits them all alike: compare ratios from one run,
// never absolute times across runs. Latencies are p50 and p99 (nearest rank);
// throughput is bytes moved divided by the time spent moving them (for
// concurrency 8, the wall time of each round of 8). MB is 10^6 bytes.
//
// Each row also shows the harness process's CPU time per operation (MinIO's
// is not in it). -tracestore wraps the vault's store and times every call it
// makes by key class (blobs, index, keys, redeemed, audit): where the wall
// time of a Put or a Redeem goes, which a CPU profile cannot show because
// the vault mostly waits for MinIO. -cpuprofile and -memprofile cover the
// harness process (the memory section's children excluded).
//
// Results go to stdout as tables and to -out as JSON. Missing a target is
// reported, not an error: the exit status is non-zero only when the harness
// itself fails.
package main
