package proctest

import (
	"fmt"
	"testing"
)

func TestTail(t *testing.T) {
	b := NewTail(32)
	for i := range 100 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if len(b.buf) > 32 {
		t.Fatalf("buffer holds %d bytes, limit 32", len(b.buf))
	}
	if got := b.Lines(2); got != "line 98\nline 99" {
		t.Fatalf("Lines(2) = %q", got)
	}
}
