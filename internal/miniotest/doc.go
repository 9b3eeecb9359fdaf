// Package miniotest runs one real MinIO server per test binary, so that the
// S3 backend is tested against the real thing rather than a mock.
//
// A package that uses it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
//
// and then, in any test or benchmark:
//
//	srv := miniotest.Server(t)
//	bucket := srv.NewBucket(t, false)
//	client := srv.Client(t)
//
// srv.NewUser(t, policy) adds a user whose only rights are those of an IAM
// policy document, for tests of least privilege.
//
// The server starts lazily on the first call to Server, listens on loopback
// only, keeps its data in a temporary directory and uses random root
// credentials. Main stops it (the whole process group) and removes the
// directory after the tests have run.
//
// A program that is not a test (the benchmark harness, ./bench) starts a
// server of its own with Start and ends it with Stop.
//
// The minio binary is looked up in $MINIO_BIN, then as "minio" on PATH, then
// as bin/minio under the module root (the first directory above the working
// directory that holds go.mod) or any directory above it (the workspace root,
// for a nested module). When none is found, tests are skipped, except
// under CI=true where a missing server is a failure: CI must not pass by
// silently skipping the S3 backend.
package miniotest
