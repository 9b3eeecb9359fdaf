package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault/store"
)

var _ store.Clock = (*Store)(nil)

// ClockKey is the one-byte object Time reads when no recent answer of the
// server carried its time (created by the first such Time, never deleted).
const ClockKey = "system/clock"

// clockReuse is how long a reading of the server's Date is reused (plus the
// time elapsed since, on the monotonic clock).
const clockReuse = 2 * time.Second

type s3Clock struct {
	mu   sync.Mutex
	at   time.Time // monotonic: when the Date was received
	date time.Time // the server's Date, plus half its one-second resolution
}

// noteDate records the Date header of a server answer.
func (c *s3Clock) noteDate(h http.Header, at time.Time) {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return
	}
	c.mu.Lock()
	if at.After(c.at) {
		c.at, c.date = at, d.Add(500*time.Millisecond)
	}
	c.mu.Unlock()
}

func (c *s3Clock) recent() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > clockReuse {
		return time.Time{}, false
	}
	return c.date.Add(time.Since(c.at)), true
}

// Time implements store.Clock: the server's time, from the Date of its
// answers (one-second resolution; half a second is added, so a reading is
// within about half a second plus one round trip of the server's clock),
// or Options.Now when set. It reuses the Date of any Get answered in the
// last two seconds; otherwise it reads ClockKey.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	if s.fixedNow != nil {
		return s.fixedNow(), nil
	}
	if t, ok := s.clock.recent(); ok {
		return t, nil
	}
	for attempt := 0; ; attempt++ {
		rc, _, h, err := s.core.GetObject(ctx, s.bucket, s.name(ClockKey), minio.GetObjectOptions{})
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(rc, 16))
			rc.Close()
			s.clock.noteDate(h, time.Now())
			if t, ok := s.clock.recent(); ok {
				return t, nil
			}
			return time.Time{}, errors.New("s3store: the server's answer carried no Date")
		}
		if minio.ToErrorResponse(err).Code != "NoSuchKey" || attempt > 0 {
			return time.Time{}, fmt.Errorf("s3store: reading the server's time: %w", mapErr("get", err))
		}
		if _, err := s.core.PutObject(ctx, s.bucket, s.name(ClockKey), bytes.NewReader([]byte{'t'}), 1, "", "", minio.PutObjectOptions{}); err != nil {
			return time.Time{}, fmt.Errorf("s3store: reading the server's time: %w", mapErr("put", err))
		}
	}
}
