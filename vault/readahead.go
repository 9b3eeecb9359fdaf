package vault

import (
	"io"
	"sync"
)

// Read-ahead: while Redeem waits for its ledger entry and audit record to
// become durable, the ciphertext keeps arriving into a bounded buffer, so
// the transfer is off the critical path. Nothing is decrypted, let alone
// released, before those writes are done.
const (
	readAheadChunk  = 64 << 10
	readAheadChunks = 64 // 4 MiB per redemption at most
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, readAheadChunk); return &b }}

type readAhead struct {
	rc   io.ReadCloser
	ch   chan *[]byte // filled chunks; closed after err is set
	err  error        // io.EOF or the read error, valid once ch is closed
	stop chan struct{}
	once sync.Once

	cur *[]byte
	buf []byte
}

func newReadAhead(rc io.ReadCloser) *readAhead {
	ra := &readAhead{rc: rc, ch: make(chan *[]byte, readAheadChunks), stop: make(chan struct{})}
	go ra.fill()
	return ra
}

func (ra *readAhead) fill() {
	for {
		p := chunkPool.Get().(*[]byte)
		n, err := io.ReadFull(ra.rc, *p)
		if n > 0 {
			full := (*p)[:n]
			q := &full
			select {
			case ra.ch <- q:
			case <-ra.stop:
				chunkPool.Put(p)
				ra.err = io.ErrClosedPipe
				close(ra.ch)
				return
			}
		} else {
			chunkPool.Put(p)
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			ra.err = err
			close(ra.ch)
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.buf) == 0 {
		ra.release()
		c, ok := <-ra.ch
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = c, *c
	}
	n := copy(p, ra.buf)
	ra.buf = ra.buf[n:]
	return n, nil
}

func (ra *readAhead) release() {
	if ra.cur != nil {
		b := (*ra.cur)[:cap(*ra.cur)]
		chunkPool.Put(&b)
		ra.cur = nil
	}
}

// Close stops the filler, returns the buffers and closes the body.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	err := ra.rc.Close() // unblocks a filler stuck in Read
	for c := range ra.ch {
		b := (*c)[:cap(*c)]
		chunkPool.Put(&b)
	}
	ra.release()
	return err
}
