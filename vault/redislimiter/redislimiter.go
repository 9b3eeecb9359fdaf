// Package redislimiter is a vault.Limiter (a detect.Counter) on Redis, for
// deployments whose request rate outgrows what one store can count with
// conditional writes. Every instance given the same Redis shares counts.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379"})
//	cfg.Limiter = redislimiter.New(rdb, "idvault:")
//
// A count is one Redis key per counter key and slot, incremented with
// INCR (atomic: concurrent Adds get distinct values, as the contract
// requires) and given an expiry of the slot's keep time in the same
// transaction. Keys carry no principal: the vault passes keyed hashes.
package redislimiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idvault/idvault/vault/detect"
)

// Limiter is the Redis Counter. It is safe for concurrent use.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ detect.Counter = (*Limiter)(nil)

// New returns a Limiter on rdb; prefix namespaces its keys (e.g.
// "idvault:<vault-id>:").
func New(rdb redis.UniversalClient, prefix string) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix}
}

func (l *Limiter) key(key string, slot time.Time) string {
	return l.prefix + key + "@" + strconv.FormatInt(slot.Unix(), 10)
}

// Add implements detect.Counter: INCR, and PEXPIREAT at slot+keep, in one
// MULTI/EXEC.
func (l *Limiter) Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	k := l.key(key, slot)
	var incr *redis.IntCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, k)
		p.PExpireAt(ctx, k, slot.Add(keep))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redislimiter: add: %w", err)
	}
	return incr.Val(), nil
}

// Get implements detect.Counter.
func (l *Limiter) Get(ctx context.Context, key string, slot time.Time, _ time.Duration) (int64, error) {
	n, err := l.rdb.Get(ctx, l.key(key, slot)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redislimiter: get: %w", err)
	}
	return n, nil
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
	vals, err := l.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("redislimiter: range: %w", err)
	}
	out := make([]int64, len(vals))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return out, nil
}
