package vault

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Read-ahead: while Redeem authenticates the first segment and spends the
// token, the ciphertext keeps arriving into a bounded buffer, so the
// transfer is off the critical path. Nothing is released before the spend
// entry (which carries the release record) is durable.
//
// Memory is bounded per stream and process-wide: each stream may hold
// readAheadChunks units of 4 KiB; one 4 KiB chunk (the one being read, or
// the next) is its own, and every other unit takes a token of the
// process-wide budget, ReadAheadBudget. Budgeted reads are large: a chunk
// of readAheadBig (16 units, 64 KiB) when that many tokens are free at
// once, else one of 4 KiB, so that a stream the budget does not constrain
// reads the store's body 64 KiB at a time, not in 1,280 small reads per
// 5 MiB (each a read from the connection and a hand-off between the
// filler and the reader; at 4 KiB the pipeline took longer than the
// GET). A stream never waits for the budget: when none is free it reads
// its next 4 KiB once it has handed out the last chunk, so slow readers
// that hold the whole budget slow nobody else down (a stream then advances
// 4 KiB at a time), and N streams pin at most ReadAheadBudget + N × 4 KiB
// of read-ahead, whatever their clients' speed. (The own chunk is small so
// that a slow stream, which holds one while its client takes the
// plaintext of the last segment, holds little.)
const (
	readAheadChunk  = 4 << 10
	readAheadBig    = 64 << 10
	bigUnits        = readAheadBig / readAheadChunk
	readAheadChunks = 1024 // units: 4 MiB per redemption at most
)

// streamStall bounds how long a stream waits for the store to deliver the
// next bytes (a store that stopped answering mid-stream): then the stream
// fails with ErrStoreUnavailable. Tests shorten it.
var streamStall = 30 * time.Second

// ReadAheadBudget is the most read-ahead memory, in bytes, that all
// redemption streams of the process hold together beyond one 4 KiB chunk
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

// errStreamStalled: the store delivered nothing for streamStall.
var errStreamStalled = fmt.Errorf("vault: payload stream stalled (the store stopped delivering): %w", ErrStoreUnavailable)

var (
	chunkPool = sync.Pool{New: func() any { b := make([]byte, readAheadChunk); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, readAheadBig); return &b }}
)

type readAhead struct {
	rc      io.ReadCloser
	stop    chan struct{}
	once    sync.Once
	filler  chan struct{} // closed when fill has returned
	filled  chan struct{} // (1) a chunk was queued, or the filler ended
	drained chan struct{} // (1) the reader handed a chunk back

	mu      sync.Mutex
	q       []raChunk // filled, not yet read
	held    int       // units (4 KiB) filled and not yet handed back (q and cur)
	err     error     // io.EOF or the read error, once done
	done    bool
	stalled bool

	cur raChunk
	buf []byte
}

// raChunk is a filled buffer; tokens is how many process-wide budget
// tokens it holds (to return with the buffer): 0 for a stream's own 4 KiB
// chunk, 1 for a budgeted 4 KiB one, bigUnits for a readAheadBig one.
type raChunk struct {
	p      *[]byte
	n      int
	tokens int
}

// units is how much of the stream's allowance c takes.
func (c raChunk) units() int { return max(c.tokens, 1) }

func newReadAhead(rc io.ReadCloser) *readAhead {
	ra := &readAhead{rc: rc, stop: make(chan struct{}), filler: make(chan struct{}),
		filled: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	go ra.fill()
	return ra
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// fill reads chunks until EOF, an error or Close. A stream's first
// outstanding chunk is its own; every further one needs tokens of the
// process-wide budget, taken only if free at once (takeTokens): otherwise
// the filler waits until the reader has handed back what it holds.
func (ra *readAhead) fill() {
	defer close(ra.filler)
	for {
		ra.mu.Lock()
		held := ra.held
		ra.mu.Unlock()
		tokens := 0
		if held > 0 {
			tokens = takeTokens(readAheadChunks - held)
			if tokens == 0 {
				select {
				case <-ra.drained:
					continue
				case <-ra.stop:
					ra.finish(io.ErrClosedPipe)
					return
				}
			}
		}
		var p *[]byte
		if tokens == bigUnits {
			p = bigPool.Get().(*[]byte)
		} else {
			p = chunkPool.Get().(*[]byte)
		}
		n, err := ra.readChunk(*p)
		c := raChunk{p, n, tokens}
		if n > 0 {
			ra.mu.Lock()
			ra.q = append(ra.q, c)
			ra.held += c.units()
			ra.mu.Unlock()
			signal(ra.filled)
		} else {
			putChunk(c)
		}
		if err != nil {
			ra.finish(err)
			return
		}
		select {
		case <-ra.stop:
			ra.finish(io.ErrClosedPipe)
			return
		default:
		}
	}
}

// takeTokens takes, without waiting, bigUnits tokens of the process-wide
// budget when that many are free and room (units the stream may still
// hold) allows, else one, else none; it returns how many it holds.
func takeTokens(room int) int {
	if room <= 0 {
		return 0
	}
	b := readAheadBudget()
	want := 1
	if room >= bigUnits {
		want = bigUnits
	}
	got := 0
	for got < want {
		select {
		case b <- struct{}{}:
			got++
			continue
		default:
		}
		break
	}
	if got > 1 && got < want {
		// Not enough for a large chunk: keep one, give the rest back.
		for range got - 1 {
			<-b
		}
		got = 1
	}
	return got
}

func (ra *readAhead) finish(err error) {
	ra.mu.Lock()
	ra.err, ra.done = err, true
	ra.mu.Unlock()
	signal(ra.filled)
}

// readChunk fills p from the store's body. Only a clean io.EOF ends the
// stream: a body that reports io.ErrUnexpectedEOF broke (a dropped
// connection); one that delivers nothing for streamStall is closed.
func (ra *readAhead) readChunk(p []byte) (int, error) {
	stall := streamStall
	watch := time.AfterFunc(stall, func() {
		ra.mu.Lock()
		ra.stalled = true
		ra.mu.Unlock()
		ra.rc.Close()
	})
	defer watch.Stop()
	n := 0
	for n < len(p) {
		m, err := ra.rc.Read(p[n:])
		n += m
		if m > 0 {
			watch.Reset(stall)
		}
		if err == nil {
			continue
		}
		ra.mu.Lock()
		stalled := ra.stalled
		ra.mu.Unlock()
		switch {
		case stalled:
			return n, errStreamStalled
		case errors.Is(err, io.ErrUnexpectedEOF):
			return n, fmt.Errorf("%w: %w", errStreamBroken, err)
		}
		return n, err
	}
	return n, nil
}

func putChunk(c raChunk) {
	if c.p == nil {
		return
	}
	for range c.tokens {
		<-readAheadBudget()
	}
	if c.tokens == bigUnits {
		bigPool.Put(c.p)
		return
	}
	chunkPool.Put(c.p)
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.buf) == 0 {
		ra.release()
		ra.mu.Lock()
		if len(ra.q) > 0 {
			ra.cur = ra.q[0]
			ra.q[0] = raChunk{}
			ra.q = ra.q[1:]
			ra.mu.Unlock()
			ra.buf = (*ra.cur.p)[:ra.cur.n]
			break
		}
		if ra.done {
			err := ra.err
			ra.mu.Unlock()
			return 0, err
		}
		ra.mu.Unlock()
		<-ra.filled
	}
	n := copy(p, ra.buf)
	ra.buf = ra.buf[n:]
	return n, nil
}

// release hands the chunk being read back.
func (ra *readAhead) release() {
	if ra.cur.p == nil {
		return
	}
	units := ra.cur.units()
	putChunk(ra.cur)
	ra.cur, ra.buf = raChunk{}, nil
	ra.mu.Lock()
	ra.held -= units
	ra.mu.Unlock()
	signal(ra.drained)
}

// Close stops the filler, returns the buffers and closes the body.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	err := ra.rc.Close() // unblocks a filler stuck in Read
	<-ra.filler
	ra.release()
	ra.mu.Lock()
	q := ra.q
	ra.q, ra.held = nil, 0
	ra.mu.Unlock()
	for _, c := range q {
		putChunk(c)
	}
	return err
}
