// Package redislimiter is a vault.Limiter (a detect.Counter) on Redis, for
// deployments whose request rate outgrows what one store can count with
// conditional writes. Every instance given the same Redis shares counts.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
//	cfg.Limiter = redislimiter.New(rdb, "idvault:", redislimiter.Options{})
//
// A count is one Redis key per counter key and slot, incremented with
// INCR (atomic: concurrent Adds get distinct values, as the contract
// requires) and given an expiry of the slot's keep time in the same script.
// Keys carry no principal: the vault passes keyed hashes.
//
// # Deadlines
//
// Every call returns by its context's deadline, or after Options.Timeout
// (2 s) when the context has none, whatever Redis does: a server that
// stopped answering (SIGSTOP, a network partition) costs a caller its
// deadline, not the client's read timeout and retries. The vault then
// refuses the request (it fails closed). A call given up on keeps running
// in the background until the client ends it; at most Options.MaxAbandoned
// (64) such calls are left running, after which calls fail at once
// (ErrUnavailable) until some end. Set ContextTimeoutEnabled in the client
// options, as above, so that they end with their context.
//
// # Counts that Redis forgets
//
// Redis keeps counts in memory: a restart without persistence, FLUSHALL or
// an eviction loses them, and lost counts must not be a fresh quota. So
// the Limiter keeps a marker key (prefix + "epoch", without expiry) and
// every Add, Get and Range checks it in the same round trip. When it is
// missing (the counts were lost, or this is the first use of this Redis),
// every call fails with detect.ErrCountsLost until Restore has rebuilt the
// counts: the vault recounts them from its audit log (every grant,
// redemption, decision and refused token of the last 9 days, through
// audit.Scan), writes each back as at least its recounted value, and sets
// the marker again. Meanwhile grants, redemptions and decisions are
// refused (ErrQuotaExceeded); one instance recounts (a lock key,
// prefix + "restoring", 10 minutes), the others wait for the marker.
// Alerts already raised in a window may be raised once more after a loss.
// Use maxmemory-policy noeviction: an eviction of single counts (without
// the marker) is not noticed.
//
// All keys of a Limiter are used together in scripts: on Redis Cluster,
// give the prefix a hash tag ("{idvault}:") so that they share a slot.
package redislimiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idvault/idvault/vault/detect"
)

// Options configure a Limiter. Zero values are the documented defaults.
type Options struct {
	// Timeout bounds a call whose context has no deadline (default 2 s).
	Timeout time.Duration
	// MaxAbandoned is how many calls given up on (their context ended
	// before Redis answered) may still run; past it calls fail at once
	// (default 64).
	MaxAbandoned int
	// RestoreLock is how long one instance may hold the right to restore
	// lost counts before another may take it over (default 10 min).
	RestoreLock time.Duration
}

// Defaults of Options.
const (
	DefaultTimeout      = 2 * time.Second
	DefaultMaxAbandoned = 64
	DefaultRestoreLock  = 10 * time.Minute
)

// ErrUnavailable: Redis did not answer in time, or too many calls are
// still waiting for it. Errors wrapping it also wrap the context's error
// when the deadline passed.
var ErrUnavailable = errors.New("redis unavailable")

// Limiter is the Redis Counter. It is safe for concurrent use.
type Limiter struct {
	rdb       redis.UniversalClient
	prefix    string
	opts      Options
	abandoned atomic.Int64
}

var _ detect.Restorer = (*Limiter)(nil)

// New returns a Limiter on rdb; prefix namespaces its keys (e.g.
// "idvault:<vault-id>:").
func New(rdb redis.UniversalClient, prefix string, opts Options) *Limiter {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxAbandoned <= 0 {
		opts.MaxAbandoned = DefaultMaxAbandoned
	}
	if opts.RestoreLock <= 0 {
		opts.RestoreLock = DefaultRestoreLock
	}
	return &Limiter{rdb: rdb, prefix: prefix, opts: opts}
}

func (l *Limiter) key(key string, slot time.Time) string {
	return l.prefix + key + "@" + strconv.FormatInt(slot.Unix(), 10)
}

func (l *Limiter) epochKey() string { return l.prefix + "epoch" }
func (l *Limiter) lockKey() string  { return l.prefix + "restoring" }

// do runs f bounded by ctx's deadline, or by Options.Timeout when ctx has
// none: it returns when either ends, leaving f to finish in the
// background (at most MaxAbandoned of them).
func (l *Limiter) do(ctx context.Context, f func(ctx context.Context) error) error {
	if l.abandoned.Load() >= int64(l.opts.MaxAbandoned) {
		return fmt.Errorf("%d calls still waiting: %w", l.opts.MaxAbandoned, ErrUnavailable)
	}
	cctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		cctx, cancel = context.WithTimeout(ctx, l.opts.Timeout)
	}
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(cctx) }()
	select {
	case err := <-done:
		return err
	case <-cctx.Done():
		l.abandoned.Add(1)
		go func() {
			<-done
			l.abandoned.Add(-1)
		}()
		return fmt.Errorf("%w: %w", ErrUnavailable, cctx.Err())
	}
}

// addScript counts one event if the counts are whole (the epoch marker is
// there), and returns -1 otherwise.
var addScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
return n`)

// setMaxScript raises a count to at least ARGV[1] and sets its expiry.
var setMaxScript = redis.NewScript(`
local n = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < n then redis.call('SET', KEYS[1], n) end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0`)

// unlockScript deletes the restore lock if it is still ours.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

func lost(op string) error {
	return fmt.Errorf("redislimiter: %s: %w (Redis restarted, or flushed or evicted them)", op, detect.ErrCountsLost)
}

// Add implements detect.Counter: INCR, and PEXPIREAT at slot+keep, in one
// script that first checks the counts are whole.
func (l *Limiter) Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	var n int64
	err := l.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = addScript.Run(ctx, l.rdb, []string{l.epochKey(), l.key(key, slot)}, slot.Add(keep).UnixMilli()).Int64()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redislimiter: add: %w", err)
	}
	if n < 0 {
		return 0, lost("add")
	}
	return n, nil
}

// mget reads keys with the epoch marker, in one MGET; a missing marker is
// ErrCountsLost.
func (l *Limiter) mget(ctx context.Context, op string, keys []string) ([]int64, error) {
	var vals []any
	err := l.do(ctx, func(ctx context.Context) error {
		var err error
		vals, err = l.rdb.MGet(ctx, append([]string{l.epochKey()}, keys...)...).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redislimiter: %s: %w", op, err)
	}
	if vals[0] == nil {
		return nil, lost(op)
	}
	out := make([]int64, len(keys))
	for i, v := range vals[1:] {
		if s, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return out, nil
}

// Get implements detect.Counter.
func (l *Limiter) Get(ctx context.Context, key string, slot time.Time, _ time.Duration) (int64, error) {
	ns, err := l.mget(ctx, "get", []string{l.key(key, slot)})
	if err != nil {
		return 0, err
	}
	return ns[0], nil
}

// Range implements detect.Ranger with one MGET.
func (l *Limiter) Range(ctx context.Context, key string, from, to time.Time, width, _ time.Duration) ([]int64, error) {
	if to.Before(from) {
		return nil, nil
	}
	var keys []string
	for s := from; !s.After(to); s = s.Add(width) {
		keys = append(keys, l.key(key, s))
	}
	return l.mget(ctx, "range", keys)
}

// Restore implements detect.Restorer. It takes the restore lock (or waits,
// within ctx, for whoever holds it to set the marker), calls recount,
// raises every count to at least its recounted value (with its expiry), and
// sets the marker. A restore that dies leaves the lock to expire
// (Options.RestoreLock); writing a count twice is harmless.
func (l *Limiter) Restore(ctx context.Context, recount func(ctx context.Context) ([]detect.SlotCount, error)) error {
	var tok [16]byte
	rand.Read(tok[:])
	me := hex.EncodeToString(tok[:])
	for {
		var whole, mine bool
		err := l.do(ctx, func(ctx context.Context) error {
			n, err := l.rdb.Exists(ctx, l.epochKey()).Result()
			if err != nil || n == 1 {
				whole = n == 1
				return err
			}
			mine, err = l.rdb.SetNX(ctx, l.lockKey(), me, l.opts.RestoreLock).Result()
			return err
		})
		switch {
		case err != nil:
			return fmt.Errorf("redislimiter: restore: %w", err)
		case whole:
			return nil
		case mine:
			return l.restore(ctx, me, recount)
		}
		// Another instance restores: look again shortly.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redislimiter: restore: waiting for another instance: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (l *Limiter) restore(ctx context.Context, me string, recount func(ctx context.Context) ([]detect.SlotCount, error)) (err error) {
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.Timeout)
		defer cancel()
		_ = l.do(uctx, func(ctx context.Context) error {
			return unlockScript.Run(ctx, l.rdb, []string{l.lockKey()}, me).Err()
		})
	}()
	counts, err := recount(ctx)
	if err != nil {
		return fmt.Errorf("redislimiter: restore: recount: %w", err)
	}
	const chunk = 512
	for i := 0; i < len(counts); i += chunk {
		part := counts[i:min(i+chunk, len(counts))]
		err := l.do(ctx, func(ctx context.Context) error {
			_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, c := range part {
					setMaxScript.Eval(ctx, p, []string{l.key(c.Key, c.Slot)}, c.N, c.Slot.Add(c.Keep).UnixMilli())
				}
				return nil
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("redislimiter: restore: %w", err)
		}
	}
	var tok [8]byte
	rand.Read(tok[:])
	epoch := fmt.Sprintf("%s %d", hex.EncodeToString(tok[:]), time.Now().Unix())
	err = l.do(ctx, func(ctx context.Context) error { return l.rdb.Set(ctx, l.epochKey(), epoch, 0).Err() })
	if err != nil {
		return fmt.Errorf("redislimiter: restore: %w", err)
	}
	return nil
}
