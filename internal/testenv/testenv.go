// Package testenv lets timing-sensitive tests measure how fast this machine
// runs right now, so that a deadline scales with the machine instead of
// growing into a constant that hides real regressions on an idle one.
//
// Slowdown runs a fixed CPU workload on every core the process may use and
// compares its wall time with what the same workload takes on the
// project's reference machine, idle (a 2-vCPU AMD EPYC VM). On a machine
// shared with other builds (a CI runner, two test suites side by side) the
// factor grows with the load; it is never below 1 and never above
// MaxSlowdown, so a hung call still fails a test.
//
// It also holds the scaffolding the project's tests share (kit.go): store
// inspection, a log sink, sample images, backends on a manual clock, child
// processes.
package testenv

import (
	"crypto/sha256"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// MaxSlowdown bounds Slowdown: beyond it a deadline stops growing, and a
// test that misses it fails.
const MaxSlowdown = 10

// reference is the wall time of the workload on the reference machine,
// idle, with GOMAXPROCS 2: SHA-256 runs at 1.8 GB/s per core there
// (shared/PERF-NOTES.md), so 64 MiB on two cores takes 19 ms; 25 ms leaves
// room for scheduling, so that an idle machine measures exactly 1 and a
// test keeps the strength of its constants. TestReference measures it.
const reference = 25 * time.Millisecond

// workload hashes a fixed amount of data on every core the process may
// use and returns the wall time. SHA-256 runs in assembly, so -race does
// not change it: the factor measures the machine, not the build.
func workload() time.Duration {
	var buf [64 << 10]byte
	procs := min(runtime.GOMAXPROCS(0), 2)
	per := (64 << 20) / procs // 64 MiB in all, split over the cores
	start := time.Now()
	var wg sync.WaitGroup
	for range procs {
		wg.Go(func() {
			h := sha256.New()
			for n := 0; n < per; n += len(buf) {
				h.Write(buf[:])
			}
			h.Sum(nil)
		})
	}
	wg.Wait()
	return time.Since(start)
}

// Measure runs the workload five times and returns the median wall time
// divided by the reference, bounded to [1, MaxSlowdown].
func Measure() float64 {
	var ds []time.Duration
	for range 5 {
		ds = append(ds, workload())
	}
	slices.Sort(ds)
	f := float64(ds[len(ds)/2]) / float64(reference)
	return min(max(f, 1), MaxSlowdown)
}

var slowdown = sync.OnceValue(Measure)

// Slowdown is Measure, taken once per process (at the first call) and
// cached.
func Slowdown() float64 { return slowdown() }

// Scale returns d times Slowdown.
func Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Slowdown())
}

// UntilChecked runs attempt until it reports that it checked what the test
// is about (a crash test whose kill came before anything happened checked
// nothing), at most n times; then the test fails. attempt gets the attempt
// number from 0 and may fail the test itself.
func UntilChecked(t testing.TB, n int, what string, attempt func(i int) (checked bool)) {
	t.Helper()
	for i := range n {
		if attempt(i) {
			return
		}
		if t.Failed() {
			return
		}
		t.Logf("attempt %d checked nothing (%s); again", i+1, what)
	}
	t.Fatalf("%d attempts and none checked anything: %s", n, what)
}
