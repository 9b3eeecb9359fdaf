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
	sent time.Time // monotonic: when the request carrying the Date was sent
	at   time.Time // monotonic: when its answer was received
	date time.Time // the server's Date
}

// noteDate records the Date header of a server answer to a request sent at
// sent and answered at at (both from time.Now, monotonic).
func (c *s3Clock) noteDate(h http.Header, sent, at time.Time) {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return
	}
	c.mu.Lock()
	if at.After(c.at) {
		c.sent, c.at, c.date = sent, at, d
	}
	c.mu.Unlock()
}

// recent returns the server's time now, as far as the last Date tells it:
// the server wrote the Date (truncated to the second) at some moment
// between the request's sending and its answer, so its clock now lies in
// [date + time since the answer, date + 1 s + time since the sending]. Of
// that interval, recent returns the point nearest this machine's clock:
// a round trip slowed down by load is uncertainty, not skew, and only a
// clock outside every reading the server could have meant is reported off
// (by its distance from the interval).
func (c *s3Clock) recent() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > clockReuse {
		return time.Time{}, false
	}
	now := time.Now()
	lo := c.date.Add(now.Sub(c.at))
	hi := c.date.Add(time.Second + now.Sub(c.sent))
	switch wall := now.Round(0); {
	case wall.Before(lo):
		return lo, true
	case wall.After(hi):
		return hi, true
	default:
		return wall, true
	}
}

// Time implements store.Clock: the server's time, from the Date of its
// answers (see s3Clock.recent: the reading nearest this machine's clock
// among those the Date and the round trip allow, so a slow round trip is
// not taken for skew), or Options.Now when set. It reuses the Date of any
// Get answered in the last two seconds; otherwise it reads ClockKey.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	if s.fixedNow != nil {
		return s.fixedNow(), nil
	}
	if t, ok := s.clock.recent(); ok {
		return t, nil
	}
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		rc, _, h, err := s.core.GetObject(ctx, s.bucket, s.name(ClockKey), minio.GetObjectOptions{})
		if err == nil {
			s.clock.noteDate(h, sent, time.Now())
			io.Copy(io.Discard, io.LimitReader(rc, 16))
			rc.Close()
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
