package miniotest

import "errors"

// ErrNoBinary: no minio server binary was found ($MINIO_BIN, minio on PATH,
// <module root>/bin/minio). Start wraps it; Server skips the test on it
// (fails it under CI=true).
var ErrNoBinary = errors.New("miniotest: no minio server binary")

// Start starts a new MinIO server outside of a test, for programs such as
// the benchmark harness, with the same binary lookup, loopback address,
// temporary data directory and random credentials as Server. Each call
// starts its own server; the caller must Stop it. The error wraps
// ErrNoBinary when no binary is found.
func Start() (*Srv, error) {
	return start()
}

// Stop terminates a server started with Start (its whole process group,
// SIGKILL after a grace period) and removes its data directory. It is for
// Start's servers only: the shared server of Server is stopped by Main.
func (s *Srv) Stop() {
	s.stop()
}
