package envelope

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	tinkstream "github.com/tink-crypto/tink-go/v2/streamingaead/subtle"
)

// segmentSize is the Tink ciphertext segment size. It is part of format
// version 1: the reader must use the writer's value.
//
// Chosen by BenchmarkPayload (encrypt then decrypt one object per op)
// against BenchmarkRawGCM (one AES-256-GCM Seal+Open on a reused buffer, the
// physical limit), go1.26.8, tink-go v2.9.0, 2-vCPU Xeon shared with other
// builds; process CPU time per op (GC included), median of 8 interleaved
// rounds. Throughput as a fraction of raw GCM, then allocation per op:
//
//	segment   4 KiB obj     256 KiB       1 MiB         5 MiB
//	4 KiB     0.10 23 KB    0.62 33 KB    0.67 40 KB    0.70  73 KB, 2636 allocs
//	16 KiB    0.08 50 KB    0.58 107 KB   0.70 109 KB   0.77 117 KB,  706 allocs
//	64 KiB    0.04 154 KB   0.34 408 KB   0.64 408 KB   0.76 410 KB
//	256 KiB   0.01 548 KB   0.13 1.1 MB   0.32 1.6 MB   0.71 1.6 MB
//	1 MiB     0.00 2.1 MB   0.09 2.6 MB   0.21 4.2 MB   0.52 6.3 MB
//	raw GCM   2.3 GB/s      2.4 GB/s      2.4 GB/s      2.2 GB/s
//
// 16 KiB is the fastest at the sizes ID images have (1-5 MiB), within 10 %
// of 4 KiB at 256 KiB, and costs 24 µs of CPU for a 4 KiB object against
// 1.1 ms at 1 MiB segments. Tink allocates its segment buffers per stream
// (and a nonce per segment) with no way to pass a pool in, which is why
// large segments lose on small objects; at 16 KiB Tink meets the >= 0.6x
// target, so the segment crypto is Tink's own. The size overhead is 16 bytes
// per 16 KiB (0.1 %).
const segmentSize = 16 << 10

const (
	payloadMagic     = "IDVP"
	payloadHeaderLen = len(payloadMagic) + 1 + commitLen // 37
	payloadADDomain  = "idvault payload"
	commitDomain     = "idvault/v1 key commitment"

	// Tink AES-GCM-HKDF parameters: HKDF-SHA256, 32-byte derived keys.
	hkdfAlg        = "SHA256"
	derivedKeyLen  = 32
	tinkHeaderLen  = 1 + derivedKeyLen + tinkstream.AESGCMHKDFNoncePrefixSizeInBytes // 40
	tagLen         = tinkstream.AESGCMHKDFTagSizeInBytes
	totalHeaderLen = payloadHeaderLen + tinkHeaderLen // 77
)

// Key is one object's data key, with the vault and object IDs its payload is
// bound to. It never prints its bytes: String, GoString and Format redact.
// Encrypt and Decrypt are safe for concurrent use; Destroy is not safe to
// call concurrently with them.
type Key struct {
	key      [dataKeyLen]byte
	commit   [commitLen]byte
	vaultID  [16]byte
	objectID [16]byte
	live     bool // made by Seal or Open and not yet destroyed; a zero Key is not usable
}

func newKey(rnd io.Reader, vaultID, objectID [16]byte) (*Key, error) {
	k := &Key{vaultID: vaultID, objectID: objectID, live: true}
	if _, err := io.ReadFull(rnd, k.key[:]); err != nil {
		return nil, fmt.Errorf("envelope: generating data key: %w", err)
	}
	k.commit = commitment(&k.key)
	return k, nil
}

// commitment is HMAC-SHA256(key, commitDomain): a value that only this key
// produces (collision resistance), so checking it makes AES-GCM key-committing.
func commitment(key *[dataKeyLen]byte) [commitLen]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(commitDomain))
	var c [commitLen]byte
	m.Sum(c[:0])
	return c
}

// Destroy zeroes the key bytes; later Encrypt, Decrypt and Reseal fail with
// ErrKeyDestroyed. It is best effort: Go may have copied the key (Tink keeps
// its own copy inside each writer and reader until they are collected).
func (k *Key) Destroy() {
	if k == nil {
		return
	}
	clear(k.key[:])
	k.live = false
}

// String returns a redacted placeholder.
func (k Key) String() string { return "envelope.Key{REDACTED}" }

// GoString returns a redacted placeholder, so %#v prints no key bytes.
func (k Key) GoString() string { return k.String() }

// Format prints the redacted placeholder for every verb (%x and %d too).
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// payloadAD is the streaming AEAD's associated data: a constant domain string
// and fixed-width fields, hence injective.
func payloadAD(vaultID, objectID [16]byte) []byte {
	ad := make([]byte, 0, len(payloadADDomain)+1+16+16)
	ad = append(ad, payloadADDomain...)
	ad = append(ad, Version)
	ad = append(ad, vaultID[:]...)
	return append(ad, objectID[:]...)
}

func (k *Key) streamer(segSize int) (*tinkstream.AESGCMHKDF, error) {
	return tinkstream.NewAESGCMHKDF(k.key[:], hkdfAlg, derivedKeyLen, segSize, payloadHeaderLen)
}

// PayloadSize returns the exact length of the payload that Encrypt writes for
// plaintextSize bytes of plaintext, headers included, or -1 when
// plaintextSize is negative or the result would overflow an int64.
func PayloadSize(plaintextSize int64) int64 {
	return payloadSize(plaintextSize, segmentSize)
}

func payloadSize(n int64, segSize int) int64 {
	if n < 0 {
		return -1
	}
	ptSeg := int64(segSize - tagLen)
	first := ptSeg - int64(totalHeaderLen) // plaintext bytes in the first segment
	segs := int64(1)
	if n > first {
		segs += (n - first + ptSeg - 1) / ptSeg
	}
	over := int64(totalHeaderLen) + segs*tagLen
	if n > (1<<63-1)-over {
		return -1
	}
	return n + over
}

// Encrypt returns a writer that encrypts what is written to it into dst as
// this object's payload: it writes the payload header at once, ciphertext
// segments as they fill, and the last segment on Close. The payload is
// complete only when Close returns nil. After an error every call returns it.
func (k *Key) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	return k.encrypt(dst, segmentSize)
}

func (k *Key) encrypt(dst io.Writer, segSize int) (io.WriteCloser, error) {
	if k == nil || !k.live {
		return nil, ErrKeyDestroyed
	}
	s, err := k.streamer(segSize)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	var hdr [payloadHeaderLen]byte
	copy(hdr[:], payloadMagic)
	hdr[len(payloadMagic)] = Version
	copy(hdr[len(payloadMagic)+1:], k.commit[:])
	if _, err := dst.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("envelope: writing payload header: %w", err)
	}
	w, err := s.NewEncryptingWriter(dst, payloadAD(k.vaultID, k.objectID))
	if err != nil {
		return nil, fmt.Errorf("envelope: starting payload: %w", err)
	}
	return &payloadWriter{w: w}, nil
}

// payloadWriter makes errors sticky and Close idempotent around Tink's
// writer, whose state is undefined after a failed write.
type payloadWriter struct {
	w      io.WriteCloser
	err    error
	closed bool
}

var errWriteAfterClose = errors.New("envelope: write after Close")

func (w *payloadWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errWriteAfterClose
	}
	n, err := w.w.Write(p)
	if err != nil {
		w.err = fmt.Errorf("envelope: writing payload: %w", err)
		return n, w.err
	}
	return n, nil
}

func (w *payloadWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.w.Close(); err != nil {
		w.err = fmt.Errorf("envelope: finishing payload: %w", err)
		return w.err
	}
	return nil
}

// Decrypt reads this object's payload from src. It reads and checks the
// headers eagerly (magic, version and key commitment; failure is
// ErrTampered) and returns a reader of the plaintext. A later Read fails
// with an error wrapping ErrTampered when a segment does not authenticate or
// the payload is truncated or extended, after releasing only earlier,
// authenticated segments (see the package doc). Errors of src itself other
// than an early EOF are returned wrapped, not as ErrTampered: an I/O failure
// is not evidence of tampering. All errors are sticky.
func (k *Key) Decrypt(src io.Reader) (io.Reader, error) {
	return k.decrypt(src, segmentSize)
}

func (k *Key) decrypt(src io.Reader, segSize int) (io.Reader, error) {
	if k == nil || !k.live {
		return nil, ErrKeyDestroyed
	}
	var hdr [payloadHeaderLen]byte
	if _, err := io.ReadFull(src, hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ErrTampered
		}
		return nil, fmt.Errorf("envelope: reading payload header: %w", err)
	}
	if string(hdr[:len(payloadMagic)]) != payloadMagic || hdr[len(payloadMagic)] != Version ||
		subtle.ConstantTimeCompare(hdr[len(payloadMagic)+1:], k.commit[:]) != 1 {
		return nil, ErrTampered
	}
	s, err := k.streamer(segSize)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	t := &srcTracker{r: src}
	r, err := s.NewDecryptingReader(t, payloadAD(k.vaultID, k.objectID))
	if err != nil {
		return nil, t.classify()
	}
	return &payloadReader{r: r, src: t}, nil
}

// srcTracker remembers an I/O error of the underlying reader, so that a Tink
// failure can be told apart: src broke (pass it on) or the bytes were wrong
// (ErrTampered). An early EOF is a truncated payload, hence tampering.
type srcTracker struct {
	r   io.Reader
	err error
}

func (t *srcTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF && t.err == nil {
		t.err = err
	}
	return n, err
}

func (t *srcTracker) classify() error {
	if t.err != nil {
		return fmt.Errorf("envelope: reading payload: %w", t.err)
	}
	return fmt.Errorf("envelope: payload: %w", ErrTampered)
}

// payloadReader makes errors sticky around Tink's reader, which after a
// failed last segment would otherwise report a clean io.EOF on the next Read.
type payloadReader struct {
	r   io.Reader
	src *srcTracker
	err error
}

func (r *payloadReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if err != nil {
		if err == io.EOF {
			r.err = io.EOF
		} else {
			// Tink returns no plaintext with an error, but be explicit.
			n = 0
			r.err = r.src.classify()
		}
	}
	return n, r.err
}

// SegmentSize is the ciphertext segment size of format version 1, for
// callers that test segment boundaries.
const SegmentSize = segmentSize

// MaterialForTesting returns a copy of the raw data key, so tests can prove
// that no byte sequence of it survives shredding. Nothing else calls it.
func (k *Key) MaterialForTesting() []byte { return bytes.Clone(k.key[:]) }
