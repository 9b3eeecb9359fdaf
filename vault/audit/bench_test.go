package audit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// BenchmarkAppend measures durable appends per second with 1, 8 and 64
// concurrent writers, on memstore (the appender's own cost) and on fsstore
// (fsync-bound: what group commit is for) and on MinIO with object lock
// (a PUT per batch).
func BenchmarkAppend(b *testing.B) {
	skey, _ := keys(b)
	rec := sampleRecord(3)
	size := int64(len(mustMarshal(b, Record{Log: "0123456789abcdef0123456789abcdef", Seq: 1 << 20, Event: rec.Event, Outcome: rec.Outcome,
		Reason: rec.Reason, Object: rec.Object, Principal: rec.Principal, Purpose: rec.Purpose, TokenID: rec.TokenID,
		RemoteAddr: rec.RemoteAddr, Subject: rec.Subject, Detail: rec.Detail})))
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"memstore", func(*testing.B) store.Store { return newTestStore() }},
		{"fsstore", func(b *testing.B) store.Store {
			st, err := fsstore.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"s3store", func(b *testing.B) store.Store {
			srv := miniotest.Server(b)
			st, err := s3store.New(context.Background(), srv.Client(b), srv.NewBucket(b, true), s3store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for _, s := range stores {
		for _, writers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", s.name, writers), func(b *testing.B) {
				a, err := NewAppender(context.Background(), s.open(b), skey, AppenderOptions{RetainFor: 24 * time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(size)
				b.ReportAllocs()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range writers {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if _, err := a.Append(context.Background(), rec); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				if err := a.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkVerify verifies a closed log of 10^6 records in batches of 512
// with a checkpoint every 1000 records (the appender's defaults), on
// memstore.
func BenchmarkVerify(b *testing.B) {
	_, vkey := keys(b)
	skey, _ := keys(b)
	const n = 1_000_000
	st := newTestStore()
	var cps []int64
	for c := int64(512 * 2); c < n; c += 512 * 2 {
		cps = append(cps, c)
	}
	buildLog(b, st, skey, logSpec{n: n, batch: 512, checkpoints: cps, final: true})
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Logs[0].Records != n {
			b.Fatal("wrong count")
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
