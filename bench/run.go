package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// op is one timed operation of a contender. part, when non-zero, is the
// duration of a sub-step worth reporting on its own (Redeem within
// Grant+Redeem).
type op func(ctx context.Context) (part time.Duration, err error)

// contender is one side of a comparison and what was measured for it.
type contender struct {
	name string
	op   op
	reps int // operations per call of op (crypto repeats small ones); 0 means 1

	lat  []time.Duration // per call of op, recorded iterations only
	part []time.Duration
	busy time.Duration // time spent in recorded rounds (wall time of each round)
	cpu  time.Duration // process CPU time over the recorded rounds
	ops  int           // recorded operations (calls × reps)
}

// interleave runs warmup+iters rounds of every contender, rotating which goes
// first, and records all but the warm-up rounds. A round is conc concurrent
// calls of a contender's op.
func interleave(ctx context.Context, warmup, iters, conc int, cs []*contender) error {
	for i := range warmup + iters {
		for j := range cs {
			c := cs[(i+j)%len(cs)]
			cpu0 := processCPU()
			lat, part, wall, err := round(ctx, conc, c.op)
			cpu := processCPU() - cpu0
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if i < warmup {
				continue
			}
			c.lat = append(c.lat, lat...)
			for _, p := range part {
				if p > 0 {
					c.part = append(c.part, p)
				}
			}
			c.busy += wall
			c.cpu += cpu
			c.ops += len(lat) * max(c.reps, 1)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// round calls f conc times at once and returns each call's latency, the
// sub-step durations and the wall time of the whole round.
func round(ctx context.Context, conc int, f op) (lat, part []time.Duration, wall time.Duration, err error) {
	if conc <= 1 {
		t0 := time.Now()
		p, err := f(ctx)
		d := time.Since(t0)
		return []time.Duration{d}, []time.Duration{p}, d, err
	}
	lat = make([]time.Duration, conc)
	part = make([]time.Duration, conc)
	errs := make([]error, conc)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range conc {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			part[k], errs[k] = f(ctx)
			lat[k] = time.Since(t0)
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return lat, part, time.Since(t0), errors.Join(errs...)
}

// quantile returns the q-quantile (0 < q <= 1) of d by nearest rank, or 0
// for no samples.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	// Nearest rank: the smallest sample with at least q of them at or below it.
	i := int(q*float64(len(s))+0.999999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measurement turns what c recorded into a result row. size is the bytes of
// one operation (0 when no bytes flow).
func (c *contender) measurement(section, cse string, size int64, conc int) Measurement {
	reps := time.Duration(max(c.reps, 1))
	per := make([]time.Duration, len(c.lat))
	for i, d := range c.lat {
		per[i] = d / reps
	}
	m := Measurement{
		Section: section, Case: cse, Contender: c.name, Size: size, Concurrency: conc,
		N: c.ops, P50Ms: ms(quantile(per, 0.5)), P99Ms: ms(quantile(per, 0.99)),
	}
	if s := c.busy.Seconds(); s > 0 {
		m.OpsPerSec = float64(c.ops) / s
		if size > 0 {
			m.MBps = float64(size) * float64(c.ops) / s / 1e6
		}
	}
	if c.cpu > 0 && c.ops > 0 {
		m.CPUMsPerOp = ms(c.cpu) / float64(c.ops)
	}
	if p := quantile(per, 0.5); p > 0 && size > 0 {
		m.P50MBps = float64(size) / p.Seconds() / 1e6
	}
	return m
}

// partMeasurement is the row of the sub-step (Redeem alone), or false when
// the op reported none.
func (c *contender) partMeasurement(section, cse, name string, size int64, conc int) (Measurement, bool) {
	if len(c.part) == 0 {
		return Measurement{}, false
	}
	p := &contender{name: name, lat: c.part, ops: len(c.part)}
	// Throughput of a sub-step inside concurrent rounds has no wall time of
	// its own; report it as if the steps ran back to back per worker.
	for _, d := range c.part {
		p.busy += d
	}
	p.busy /= time.Duration(max(conc, 1))
	return p.measurement(section, cse, size, conc), true
}

// sizeName prints a byte count the way the cases are named: 4KiB, 5MiB.
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
