package s3store

import (
	"net/http"
	"testing"
	"time"
)

// TestClockRoundTripIsNotSkew: a Date that a slow round trip delayed (the
// server wrote it 3 s before the answer arrived, 4 s after the request
// left) is uncertainty, not skew: the reading is this machine's clock. A
// Date an hour off still reads an hour off, to within the round trip and
// the Date's second.
func TestClockRoundTripIsNotSkew(t *testing.T) {
	h := func(d time.Time) http.Header {
		return http.Header{"Date": []string{d.UTC().Format(http.TimeFormat)}}
	}
	now := time.Now()

	var slow s3Clock
	slow.noteDate(h(now.Add(-3*time.Second)), now.Add(-4*time.Second), now)
	got, ok := slow.recent()
	if !ok {
		t.Fatal("no reading")
	}
	if d := time.Until(got); d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("slow round trip read as %v off", d)
	}

	var off s3Clock
	off.noteDate(h(now.Add(-time.Hour)), now.Add(-200*time.Millisecond), now)
	got, _ = off.recent()
	if d := time.Since(got); d < time.Hour-2*time.Second || d > time.Hour+time.Second {
		t.Fatalf("an hour-off server read as %v behind", d)
	}

	var ahead s3Clock
	ahead.noteDate(h(now.Add(time.Hour)), now.Add(-200*time.Millisecond), now)
	got, _ = ahead.recent()
	if d := time.Until(got); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Fatalf("an hour-ahead server read as %v ahead", d)
	}
}
