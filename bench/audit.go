package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// auditCase is one appender configuration: a store and a number of
// concurrent writers, each appending as fast as its Append returns.
type auditCase struct {
	cse, who string
	writers  int
	append   func(ctx context.Context) error
	close    func(ctx context.Context) error

	lat  []time.Duration
	n    int
	busy time.Duration
}

// benchAudit: durable appends per second with 1, 8 and 64 writers on
// fsstore and s3store, and a plain write+fsync per record to one file as
// the naive alternative on the same disk.
func (e *env) benchAudit(ctx context.Context) error {
	signer, _, err := audit.GenerateKey("idvbench")
	if err != nil {
		return err
	}
	fsDir := filepath.Join(e.tmp, "audit-fs")
	fst, err := fsstore.Open(fsDir)
	if err != nil {
		return err
	}
	s3st, err := s3store.New(ctx, e.client, e.bucket, s3store.Options{Prefix: "auditbench/"})
	if err != nil {
		return err
	}
	rec := sampleRecord()
	// The plain log writes the same encoded bytes as one idvault record
	// (Log and Seq are what the appender would fill in).
	full := rec
	full.Log, full.Seq, full.Time = "0123456789abcdef0123456789abcdef", 1<<20, time.Now()
	plainRec, err := full.MarshalBinary()
	if err != nil {
		return err
	}

	var cases []*auditCase
	defer func() {
		for _, c := range cases {
			_ = c.close(context.WithoutCancel(ctx))
		}
	}()
	for _, st := range []struct {
		name string
		st   store.Store
	}{{"fsstore", fst}, {"s3store", s3st}} {
		for _, w := range []int{1, 8, 64} {
			a, err := audit.NewAppender(ctx, st.st, signer, audit.AppenderOptions{})
			if err != nil {
				return err
			}
			cases = append(cases, &auditCase{
				cse: fmt.Sprintf("%s %d writers", st.name, w), who: "idvault Append", writers: w,
				append: func(ctx context.Context) error { _, err := a.Append(ctx, rec); return err },
				close:  a.Close,
			})
		}
	}
	for _, w := range []int{1, 8, 64} {
		f, err := os.OpenFile(filepath.Join(e.tmp, fmt.Sprintf("plain-%d.log", w)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		var mu sync.Mutex
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(plainRec)))
		frame = append(frame, plainRec...)
		cases = append(cases, &auditCase{
			cse: fmt.Sprintf("fsstore %d writers", w), who: "write+fsync per record", writers: w,
			append: func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				if _, err := f.Write(frame); err != nil {
					return err
				}
				return f.Sync()
			},
			close: func(context.Context) error { return f.Close() },
		})
	}

	rounds := e.iters(3, 1)
	slice := time.Second
	if e.opts.quick {
		slice = 100 * time.Millisecond
	}
	for r := range rounds {
		for j := range cases {
			if err := cases[(r+j)%len(cases)].run(ctx, slice); err != nil {
				return err
			}
		}
	}
	for _, c := range cases {
		m := Measurement{
			Section: "audit", Case: c.cse, Contender: c.who, Concurrency: c.writers, N: c.n,
			P50Ms: ms(quantile(c.lat, 0.5)), P99Ms: ms(quantile(c.lat, 0.99)),
		}
		if s := c.busy.Seconds(); s > 0 {
			m.OpsPerSec = float64(c.n) / s
		}
		e.add(m)
	}
	for _, c := range cases {
		if c.who != "idvault Append" {
			continue
		}
		var t *target
		if c.cse == "fsstore 64 writers" {
			t = valueAtLeast(20000, "records/s")
		}
		if base, ok := e.res.find("audit", c.cse, "write+fsync per record"); ok {
			e.res.compare("audit "+c.cse+" durable records/s (plain: write+fsync)", "audit", c.cse, c.who, base.Contender, "records_per_s", t)
		} else {
			m, _ := e.res.find("audit", c.cse, c.who)
			e.res.Checks = append(e.res.Checks, newCheck("audit "+c.cse+" durable records/s", "records_per_s", m.OpsPerSec, 0, t))
		}
	}
	return nil
}

// run appends from c.writers goroutines for d and records every Append's
// latency.
func (c *auditCase) run(ctx context.Context, d time.Duration) error {
	lats := make([][]time.Duration, c.writers)
	errs := make([]error, c.writers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range c.writers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := c.append(ctx); err != nil {
					errs[w] = err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	c.busy += time.Since(start)
	for w := range c.writers {
		if errs[w] != nil {
			return fmt.Errorf("audit %s (%s): %w", c.cse, c.who, errs[w])
		}
		c.lat = append(c.lat, lats[w]...)
		c.n += len(lats[w])
	}
	return nil
}

// sampleRecord is a typical redemption record: identifiers and labels only.
func sampleRecord() audit.Record {
	return audit.Record{
		Event: audit.EventRedeem, Outcome: audit.OutcomeOK,
		Object:    "5f0c3a8e9b1d4c2a7e6f8091a2b3c4d5",
		Principal: "reviewer-7", Purpose: "age-check",
		TokenID:    "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
		RemoteAddr: "192.0.2.1:443",
		Subject:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}
}
