package testenv

import (
	"os"
	"slices"
	"testing"
	"time"
)

// TestSlowdownBounded: the factor stays in [1, MaxSlowdown] and Scale
// multiplies by it.
func TestSlowdownBounded(t *testing.T) {
	f := Slowdown()
	if f < 1 || f > MaxSlowdown {
		t.Fatalf("Slowdown() = %v, outside [1, %d]", f, MaxSlowdown)
	}
	if got := Scale(time.Second); got < time.Second || got > MaxSlowdown*time.Second {
		t.Fatalf("Scale(1s) = %v", got)
	}
	t.Logf("slowdown %.2f", f)
}

// TestReference prints the workload's minimum and median over 40 runs:
// run it on the reference machine, idle, to set reference
// (IDVAULT_TESTENV_REFERENCE=1 go test -run TestReference -v ./internal/testenv).
func TestReference(t *testing.T) {
	if os.Getenv("IDVAULT_TESTENV_REFERENCE") == "" {
		t.Skip("set IDVAULT_TESTENV_REFERENCE=1 to measure")
	}
	var ds []time.Duration
	for range 40 {
		ds = append(ds, workload())
	}
	slices.Sort(ds)
	t.Logf("workload: min %v, median %v (reference %v)", ds[0], ds[len(ds)/2], reference)
}

func TestUntilChecked(t *testing.T) {
	n := 0
	UntilChecked(t, 3, "test", func(i int) bool { n++; return i == 1 })
	if n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}
