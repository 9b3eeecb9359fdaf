package memstore

import (
	"sync"
	"testing"
	"time"
)

// TestClockConcurrent moves one clock from many goroutines: under -race a clock
// without its lock fails, and no Advance may be lost.
func TestClockConcurrent(t *testing.T) {
	c := NewClock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Advance(time.Millisecond)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), ClockStart.Add(8*time.Second); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
	c.Set(ClockStart)
	if !c.Now().Equal(ClockStart) {
		t.Fatalf("Set did not move the clock")
	}
}
