package vault

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// NewStoreLimiter returns a Limiter kept in st, so that every Vault
// instance sharing the store enforces one count per principal: an attacker
// spreading requests over many instances gets one quota, not one per
// instance. Give every instance the same store (typically Config.Store).
//
// Each Note writes one empty marker, limits/<key>/<member>/<time>, and lists
// the key's markers to count distinct members inside the window; markers
// that fell out of the window are deleted on the way. That is a small PUT
// and a LIST per Grant and per Redeem, and the keys name no principal (the
// vault passes keyed hashes). Counts are exact up to concurrent Notes that
// list before each other's markers land, which can each see one fewer.
func NewStoreLimiter(st store.Store) Limiter { return &storeLimiter{st: st} }

type storeLimiter struct{ st store.Store }

func (l *storeLimiter) Note(ctx context.Context, key, member string, now time.Time, window time.Duration) (int, error) {
	prefix := "limits/" + key + "/"
	stamp := strconv.FormatInt(now.UnixNano(), 10)
	if err := store.ValidKey(prefix + member + "/" + stamp); err != nil {
		return 0, fmt.Errorf("vault: limiter key: %w", err)
	}
	if err := l.st.Put(ctx, prefix+member+"/"+stamp, bytes.NewReader(nil), 0, store.PutOptions{}); err != nil {
		return 0, fmt.Errorf("vault: limiter: %w", err)
	}
	cutoff := now.Add(-window).UnixNano()
	seen := map[string]bool{}
	var stale []string
	for k, err := range l.st.List(ctx, prefix) {
		if err != nil {
			return 0, fmt.Errorf("vault: limiter: %w", err)
		}
		m, ts, ok := strings.Cut(strings.TrimPrefix(k, prefix), "/")
		if !ok {
			continue
		}
		t, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			continue
		}
		if t <= cutoff {
			stale = append(stale, k)
			continue
		}
		seen[m] = true
	}
	for _, k := range stale {
		_ = l.st.Delete(ctx, k) // best effort: the next Note retries
	}
	return len(seen), nil
}
