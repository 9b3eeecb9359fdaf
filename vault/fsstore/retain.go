package fsstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"
)

// A retention sidecar is one line: a magic word naming the format, a
// space, the RetainUntil date in RFC 3339 (UTC, nanoseconds) and '\n'.
// Only the canonical encoding of a date parses.
const retentionMagic = "idvault-fsstore-retain-v1 "

// maxRetentionLen bounds the bytes read from a sidecar; a valid one is
// shorter.
const maxRetentionLen = 128

func formatRetention(t time.Time) []byte {
	return []byte(retentionMagic + t.UTC().Format(time.RFC3339Nano) + "\n")
}

// parseRetention parses a sidecar; its errors wrap ErrCorruptRetention.
func parseRetention(b []byte) (time.Time, error) {
	rest, ok := bytes.CutPrefix(b, []byte(retentionMagic))
	if !ok {
		return time.Time{}, fmt.Errorf("%w: bad header", ErrCorruptRetention)
	}
	rest, ok = bytes.CutSuffix(rest, []byte("\n"))
	if !ok {
		return time.Time{}, fmt.Errorf("%w: no newline", ErrCorruptRetention)
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: bad date", ErrCorruptRetention)
	}
	if !bytes.Equal(formatRetention(t), b) {
		return time.Time{}, fmt.Errorf("%w: date not in canonical form", ErrCorruptRetention)
	}
	return t, nil
}

// readRetention reads key's sidecar. A sidecar that does not parse is
// reported present, with its raw bytes and an error wrapping
// ErrCorruptRetention, so that callers can fail closed or replace it.
func (s *Store) readRetention(key string) (retention, error) {
	p, err := s.keyPath(s.retain, key)
	if err != nil {
		return retention{}, err
	}
	f, err := os.Open(p)
	if notExist(err) {
		return retention{}, nil
	}
	if err != nil {
		return retention{}, fsErr("read retention of", key, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxRetentionLen+1))
	if err != nil {
		return retention{}, fsErr("read retention of", key, err)
	}
	r := retention{present: true, raw: raw}
	if len(raw) > maxRetentionLen {
		return r, fmt.Errorf("fsstore: retention of %q: %w: too long", key, ErrCorruptRetention)
	}
	if r.until, err = parseRetention(raw); err != nil {
		return r, fmt.Errorf("fsstore: retention of %q: %w", key, err)
	}
	return r, nil
}

// writeRetention atomically sets key's sidecar to until.
func (s *Store) writeRetention(key string, until time.Time) error {
	if err := s.writeFileAtomic(s.retain, key, formatRetention(until)); err != nil {
		return fsErr("write retention of", key, err)
	}
	return nil
}

// restoreRetention puts back the sidecar that old describes after a Put
// that wrote a new one failed to place its object. Best effort: the Put is
// failing already, and a leftover sidecar without its object is ignored.
func (s *Store) restoreRetention(key string, old retention) {
	if old.present {
		_ = s.writeFileAtomic(s.retain, key, old.raw)
		return
	}
	s.removeRetention(key)
}

// removeRetention removes key's sidecar and the directories it leaves
// empty under dir/.retain.
func (s *Store) removeRetention(key string) {
	p, err := s.keyPath(s.retain, key)
	if err != nil {
		return
	}
	if err := os.Remove(p); err == nil || notExist(err) {
		prune(s.retain, key)
	}
}
