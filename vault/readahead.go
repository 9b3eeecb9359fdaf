package vault

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Read-ahead: while Redeem authenticates the first segment and spends the
// token, the ciphertext keeps arriving into a bounded buffer, so the
// transfer is off the critical path. Nothing is released before the spend
// entry (which carries the release record) is durable.
//
// Memory is bounded per stream and process-wide: each stream may hold
// readAheadChunks chunks, and all streams of the process together at most
// ReadAheadBudget bytes beyond one chunk each (a stream always gets its
// first chunk, so every stream progresses). A slow reader therefore pins at
// most its share, and 200 slow readers pin at most ReadAheadBudget + 200 ×
// 64 KiB of read-ahead.
const (
	readAheadChunk  = 64 << 10
	readAheadChunks = 64 // 4 MiB per redemption at most
)

// ReadAheadBudget is the most read-ahead memory, in bytes, that all
// redemption streams of the process hold together beyond one 64 KiB chunk
// each. Set it before the first Redeem; it is read once.
var ReadAheadBudget int64 = 32 << 20

var (
	budgetOnce sync.Once
	budget     chan struct{} // one token per chunk of the process-wide budget
)

func readAheadBudget() chan struct{} {
	budgetOnce.Do(func() {
		n := max(ReadAheadBudget/readAheadChunk, 1)
		budget = make(chan struct{}, n)
	})
	return budget
}

// errStreamBroken: the store's body ended before its length (a dropped
// connection). It is an I/O failure, not evidence of tampering.
var errStreamBroken = errors.New("vault: payload stream ended early (connection to the store dropped)")

var chunkPool = sync.Pool{New: func() any { b := make([]byte, readAheadChunk); return &b }}

type readAhead struct {
	rc   io.ReadCloser
	ch   chan raChunk // filled chunks; closed after err is set
	err  error        // io.EOF or the read error, valid once ch is closed
	stop chan struct{}
	once sync.Once
	held atomic.Int32 // chunks sent and not yet returned

	cur raChunk
	buf []byte
}

// raChunk is a filled buffer; budgeted says it holds a process-wide budget
// token (to return with the buffer).
type raChunk struct {
	p        *[]byte
	n        int
	budgeted bool
}

func newReadAhead(rc io.ReadCloser) *readAhead {
	ra := &readAhead{rc: rc, ch: make(chan raChunk, readAheadChunks), stop: make(chan struct{})}
	go ra.fill()
	return ra
}

// fill reads chunks until EOF, an error or Close. Every chunk but the
// stream's first outstanding one needs a token from the process-wide
// budget; the filler waits for one (or for Close).
func (ra *readAhead) fill() {
	b := readAheadBudget()
	for {
		budgeted := ra.held.Load() > 0
		if budgeted {
			select {
			case b <- struct{}{}:
			case <-ra.stop:
				ra.finish(io.ErrClosedPipe)
				return
			}
		}
		p := chunkPool.Get().(*[]byte)
		n, err := readChunk(ra.rc, *p)
		if n > 0 {
			ra.held.Add(1)
			select {
			case ra.ch <- raChunk{p, n, budgeted}:
			case <-ra.stop:
				ra.held.Add(-1)
				putChunk(raChunk{p, n, budgeted})
				ra.finish(io.ErrClosedPipe)
				return
			}
		} else {
			putChunk(raChunk{p, 0, budgeted})
		}
		if err != nil {
			ra.finish(err)
			return
		}
	}
}

func (ra *readAhead) finish(err error) {
	ra.err = err
	close(ra.ch)
}

// readChunk fills p from r. Only a clean io.EOF ends the stream: a body
// that reports io.ErrUnexpectedEOF broke (a dropped connection).
func readChunk(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err == io.ErrUnexpectedEOF {
			return n, fmt.Errorf("%w: %w", errStreamBroken, err)
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func putChunk(c raChunk) {
	if c.p == nil {
		return
	}
	if c.budgeted {
		<-readAheadBudget()
	}
	chunkPool.Put(c.p)
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.buf) == 0 {
		ra.release()
		c, ok := <-ra.ch
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = c, (*c.p)[:c.n]
	}
	n := copy(p, ra.buf)
	ra.buf = ra.buf[n:]
	return n, nil
}

func (ra *readAhead) release() {
	if ra.cur.p != nil {
		ra.held.Add(-1)
		putChunk(ra.cur)
		ra.cur = raChunk{}
	}
}

// Close stops the filler, returns the buffers and closes the body.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	err := ra.rc.Close() // unblocks a filler stuck in Read
	for c := range ra.ch {
		ra.held.Add(-1)
		putChunk(c)
	}
	ra.release()
	return err
}
