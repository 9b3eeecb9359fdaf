package vault

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

// countingBody is a store body that counts the reads asked of it.
type countingBody struct {
	r     io.Reader
	mu    sync.Mutex
	reads int
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.reads++
	b.mu.Unlock()
	return b.r.Read(p)
}

func (b *countingBody) Close() error { return nil }

// waitHeld waits (bounded) until ra holds units of read-ahead.
func waitHeld(t *testing.T, ra *readAhead, units int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ra.mu.Lock()
		held := ra.held
		ra.mu.Unlock()
		if held == units {
			return
		}
		if held > units || time.Now().After(deadline) {
			t.Fatalf("read-ahead holds %d units of 4 KiB, want %d", held, units)
		}
		time.Sleep(time.Millisecond) // polling a condition, not timing a result
	}
}

// TestReadAheadLargeReads (issue 25): a stream the budget does not
// constrain reads the store's body in 64 KiB reads, not 4 KiB ones (5 MiB
// took 1,280 reads and the pipeline was slower than the GET it hides);
// the bytes come out unchanged.
func TestReadAheadLargeReads(t *testing.T) {
	withReadAheadBudget(t, 32<<20)
	want := image(5<<20, "")
	body := &countingBody{r: bytes.NewReader(want)}
	ra := newReadAhead(body)
	got, err := io.ReadAll(ra)
	ra.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d of %d bytes through the read-ahead: %v", len(got), len(want), err)
	}
	if max := len(want)/readAheadBig + 4; body.reads > max {
		t.Fatalf("%d reads of the store's body for 5 MiB; want at most %d (64 KiB each)", body.reads, max)
	}
	if n := len(budget); n != 0 {
		t.Fatalf("%d budget tokens not returned", n)
	}
}

// TestReadAheadBounds: the large reads keep the bounds. A stream whose
// reader takes nothing holds exactly readAheadChunks units (4 MiB), all
// but its own 4 KiB from the budget; with fewer than 16 tokens free it
// takes them one at a time, and holds no more than the budget beyond its
// own chunk; Close returns every token.
func TestReadAheadBounds(t *testing.T) {
	body := func() *countingBody { return &countingBody{r: bytes.NewReader(image(8<<20, ""))} }
	t.Run("stream-cap", func(t *testing.T) {
		withReadAheadBudget(t, 32<<20)
		ra := newReadAhead(body())
		waitHeld(t, ra, readAheadChunks)
		if n := len(budget); n != readAheadChunks-1 {
			t.Fatalf("a stream holding %d units holds %d budget tokens, want %d", readAheadChunks, n, readAheadChunks-1)
		}
		ra.Close()
		if n := len(budget); n != 0 {
			t.Fatalf("%d budget tokens not returned by Close", n)
		}
	})
	t.Run("scarce-budget", func(t *testing.T) {
		const tokens = bigUnits - 6 // 40 KiB: never 16 tokens at once
		withReadAheadBudget(t, tokens*readAheadChunk)
		b := body()
		ra := newReadAhead(b)
		waitHeld(t, ra, tokens+1)
		if n := len(budget); n != tokens {
			t.Fatalf("budget tokens held: %d, want %d", n, tokens)
		}
		got, err := io.ReadAll(ra)
		ra.Close()
		if err != nil || len(got) != 8<<20 {
			t.Fatalf("read %d bytes: %v", len(got), err)
		}
		if n := len(budget); n != 0 {
			t.Fatalf("%d budget tokens not returned", n)
		}
	})
}
