package audit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// A batch object holds the records of one group commit:
//
//	magic    4 bytes "IDVB"
//	version  1 byte (1)
//	count    uint32 big-endian, 1..maxBatchRecords
//	count ×  uint32 big-endian length (1..maxRecordLen) + record (MarshalBinary)
//
// and nothing after. The leaf hash of a record in the Merkle tree is
// tlog.RecordHash of its MarshalBinary bytes (without the length prefix).
const (
	batchMagic      = "IDVB"
	batchVersion    = 1
	batchHeaderLen  = len(batchMagic) + 1 + 4
	maxBatchRecords = 1 << 16
)

// appendBatchHeader starts a batch of count records.
func appendBatchHeader(b []byte, count int) []byte {
	b = append(b, batchMagic...)
	b = append(b, batchVersion)
	return binary.BigEndian.AppendUint32(b, uint32(count))
}

// batchReader streams the records of one batch object, holding one record
// at a time.
type batchReader struct {
	r     *bufio.Reader
	left  uint32
	count uint32
	buf   []byte
}

// ioError marks a failure of the underlying reader (the store), as opposed
// to bytes that do not parse: Verify reports the first as an error and the
// second as tampering.
type ioError struct{ err error }

func (e *ioError) Error() string { return "audit: reading batch: " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corruptf("batch truncated in %s", what)
		}
		return &ioError{err}
	}
	return nil
}

func newBatchReader(r io.Reader) (*batchReader, error) {
	br := &batchReader{r: bufio.NewReaderSize(r, 4<<10)} // records are copied out; most batches are small
	var h [batchHeaderLen]byte
	if err := readFull(br.r, h[:], "header"); err != nil {
		return nil, err
	}
	if string(h[:4]) != batchMagic {
		return nil, corruptf("not a batch (bad magic)")
	}
	if h[4] != batchVersion {
		return nil, corruptf("unknown batch version")
	}
	br.count = binary.BigEndian.Uint32(h[5:])
	if br.count == 0 || br.count > maxBatchRecords {
		return nil, corruptf("batch record count out of range")
	}
	br.left = br.count
	return br, nil
}

// next returns the next record's bytes (valid until the following call)
// and the parsed record. After the last record it checks that nothing
// follows and returns io.EOF.
func (br *batchReader) next(r *Record) ([]byte, error) {
	if br.left == 0 {
		if _, err := br.r.ReadByte(); err == nil {
			return nil, corruptf("trailing bytes after batch")
		} else if err != io.EOF {
			return nil, &ioError{err}
		}
		return nil, io.EOF
	}
	var l [4]byte
	if err := readFull(br.r, l[:], "record length"); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || int(n) > maxRecordLen {
		return nil, corruptf("batch record length out of range")
	}
	if cap(br.buf) < int(n) {
		br.buf = make([]byte, n, maxRecordLen)
	}
	raw := br.buf[:n]
	if err := readFull(br.r, raw, "record"); err != nil {
		return nil, err
	}
	if err := parseRecordInto(r, raw); err != nil {
		return nil, err
	}
	br.left--
	return raw, nil
}

// parseBatch decodes a whole batch held in memory (tests and fuzzing; the
// verifier streams with batchReader).
func parseBatch(b []byte) ([]Record, error) {
	br, err := newBatchReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out []Record
	for {
		var r Record
		_, err := br.next(&r)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
}
