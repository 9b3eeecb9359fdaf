//go:build unix

package envelope

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user+system) of the whole process, GC
// workers included. On a shared, loaded machine it measures the cost of an
// operation far more steadily than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter reports cpu-ns/op and cpu-MB/s (bytes per op over CPU time).
type cpuMeter struct {
	b     *testing.B
	start time.Duration
	bytes int64
}

func startCPU(b *testing.B, bytesPerOp int64) *cpuMeter {
	return &cpuMeter{b: b, start: processCPU(), bytes: bytesPerOp}
}

func (m *cpuMeter) stop() {
	d := processCPU() - m.start
	if d <= 0 || m.b.N == 0 {
		return
	}
	perOp := float64(d.Nanoseconds()) / float64(m.b.N)
	m.b.ReportMetric(perOp, "cpu-ns/op")
	if m.bytes > 0 {
		m.b.ReportMetric(float64(m.bytes)/perOp*1e3, "cpu-MB/s")
	}
}
