package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// benchStore writes n records (one log, batches of up to 512) into a
// temporary fsstore and returns its directory and verifier key.
func benchStore(b *testing.B, n int) (string, string) {
	b.Helper()
	dir := b.TempDir()
	st := openFS(b, dir)
	ctx := context.Background()
	a, vk := newAppender(b, st, "bench", audit.AppenderOptions{CheckpointEvery: time.Hour, CheckpointRecords: 10000})
	// Concurrent appends so that records share batch objects, as in a busy
	// vault.
	const writers = 64
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w; i < n; i += writers {
				r := audit.Record{
					Time: base.Add(time.Duration(i) * time.Second), Event: audit.EventRedeem, Outcome: audit.OutcomeOK,
					Object: fmt.Sprintf("%032x", i%1000), Principal: fmt.Sprintf("reviewer-%d", i%17), Purpose: "age-check",
					TokenID: fmt.Sprintf("%032x", i), RemoteAddr: "192.0.2.1:443",
				}
				if _, err := a.Append(ctx, r); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return dir, vk
}

// countingWriter counts the bytes written, so that b.SetBytes can report
// the output rate.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func benchCommand(b *testing.B, records int, args ...string) {
	dir, vk := benchStore(b, records)
	full := append([]string{}, args...)
	// Every audit command checks what it reads: query and stats too.
	full = append(full, "--store", dir, "--verifier-key", vk)
	var probe countingWriter
	var stderr strings.Builder
	if code := run(context.Background(), full, &probe, &stderr, func(string) string { return "" }); code != exitOK {
		b.Fatalf("exit %d: %s", code, stderr.String())
	}
	// Bytes read: the audit objects on disk.
	var in int64
	err := filepath.WalkDir(filepath.Join(dir, "audit"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, ferr := d.Info()
			if ferr != nil {
				return ferr
			}
			in += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(in)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if code := run(context.Background(), full, io.Discard, io.Discard, func(string) string { return "" }); code != exitOK {
			b.Fatalf("exit %d", code)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(probe.n), "out-B/op")
}

// MB/s is the rate at which audit objects are read; out-B/op is the size
// of the command's output.

func BenchmarkAuditQueryJSON(b *testing.B) { benchCommand(b, 20000, "audit", "query") }

func BenchmarkAuditQueryTable(b *testing.B) {
	benchCommand(b, 20000, "audit", "query", "--format", "table")
}

func BenchmarkAuditStats(b *testing.B) { benchCommand(b, 20000, "audit", "stats") }

func BenchmarkAuditVerify(b *testing.B) { benchCommand(b, 20000, "audit", "verify") }

func BenchmarkParseStoreURL(b *testing.B) {
	const in = "s3://idv-bucket?endpoint=minio.internal:9000&tls=false&prefix=vault/a&region=eu-west-1"
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseStoreURL(in); err != nil {
			b.Fatal(err)
		}
	}
}
