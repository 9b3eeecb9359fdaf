package fsstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/store"
)

var _ store.Clock = (*Store)(nil)

// clockReuse is how long Time answers from its last reading (plus the time
// elapsed since, on the monotonic clock) before it reads the filesystem's
// time again.
const clockReuse = time.Second

type fsClock struct {
	mu   sync.Mutex
	at   time.Time // monotonic reading when the file time was read
	file time.Time // the modification time the filesystem gave the probe
}

// Time implements store.Clock: the modification time the filesystem gives a
// file it creates (on a network filesystem, the server's clock), or
// Options.Now when set. It answers from a reading at most a second old.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	if s.clockFixed {
		return s.now(), nil
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	c := &s.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < clockReuse {
		return c.file.Add(time.Since(c.at)), nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p := filepath.Join(s.tmp, fmt.Sprintf("clock-%x", b))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return time.Time{}, fmt.Errorf("fsstore: reading the filesystem's time: %w", err)
	}
	at := time.Now()
	fi, err := f.Stat()
	f.Close()
	os.Remove(p)
	if err != nil {
		return time.Time{}, fmt.Errorf("fsstore: reading the filesystem's time: %w", err)
	}
	c.at, c.file = at, fi.ModTime()
	return c.file, nil
}
