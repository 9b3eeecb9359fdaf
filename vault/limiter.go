package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/store"
)

// Limiter keeps the counts behind quotas and alerts, in fixed time slots
// (see detect.Counter for the contract: Add hands out tickets, so counts
// are exact under concurrency). The default, NewStoreLimiter on
// Config.Store, is shared by every instance on the store; Redis is in the
// module github.com/idvault/idvault/vault/redislimiter. Every
// implementation passes the suite in vault/detect/countertest.
type Limiter = detect.Counter

// NewMemoryLimiter returns an in-process Limiter: its counts are this
// process's only, so an attacker spreading requests over N instances gets
// N quotas. Open refuses it while other instances are live on the same
// store unless Config.Detection.AllowLocalLimiter is set. Memory is bounded (about
// 40 MB at most, whatever keys arrive).
func NewMemoryLimiter() Limiter { return detect.NewMemoryCounter(0) }

// isLocal reports whether a Limiter keeps per-process counts.
func isLocal(l Limiter) bool {
	lc, ok := l.(interface{ Local() bool })
	return ok && lc.Local()
}

// Live markers: each instance writes limits/live/<instance>/<slot> (slot
// in Unix nanoseconds) once per 5-minute slot while it serves grants or
// redemptions, so an instance opening with an in-process limiter can see
// that it is not alone. Sweep collects them (the time is the last segment).
const liveSlot = 5 * time.Minute

const livePrefix = "limits/live/"

func liveKey(slot time.Time, instance [16]byte) string {
	return fmt.Sprintf("%s%x/%d", livePrefix, instance, slot.UnixNano())
}

// markLive writes this instance's marker for the current slot, once.
func (v *Vault) markLive(ctx context.Context) {
	slot := v.now().Truncate(liveSlot).Unix()
	if v.liveMarked.Load() == slot {
		return
	}
	v.liveMarked.Store(slot)
	k := liveKey(time.Unix(slot, 0), v.instance)
	if err := v.st.Put(ctx, k, bytes.NewReader(nil), 0, store.PutOptions{}); err != nil {
		v.liveMarked.Store(0) // retry on the next request
	}
}

// othersLive reports whether another instance wrote a live marker in the
// current or the previous two slots (up to 15 minutes). It lists the
// markers (one per instance and slot, collected by Sweep): once per Open.
func (v *Vault) othersLive(ctx context.Context) (bool, error) {
	since := v.now().Truncate(liveSlot).Add(-2 * liveSlot).UnixNano()
	mine := fmt.Sprintf("%s%x/", livePrefix, v.instance)
	for k, err := range v.st.List(ctx, livePrefix) {
		if err != nil {
			return false, err
		}
		if strings.HasPrefix(k, mine) {
			continue
		}
		i := strings.LastIndexByte(k, '/')
		if ts, err := strconv.ParseInt(k[i+1:], 10, 64); err == nil && ts >= since {
			return true, nil
		}
	}
	return false, nil
}

// checkLimiterShared runs in Open: an in-process limiter next to other
// live instances on the same store would give an attacker one quota per
// instance, so Open refuses it unless the user opted out. (A crashed
// instance's markers count as live for up to 15 minutes; Close removes
// its own.)
func (v *Vault) checkLimiterShared(ctx context.Context) error {
	if !isLocal(v.limiter) || v.cfg.Detection.AllowLocalLimiter {
		v.markLive(ctx)
		return nil
	}
	others, err := v.othersLive(ctx)
	if err != nil {
		return fmt.Errorf("vault: open: checking for other instances: %w", err)
	}
	if others {
		return fmt.Errorf("vault: open: other instances are live on this store and Config.Detection.Limiter counts per process, "+
			"which gives an attacker one quota per instance; use the default (shared) limiter or set AllowLocalLimiter: %w", ErrInvalidArgument)
	}
	v.markLive(ctx)
	return nil
}

// unmarkLive removes this instance's live markers (Close).
func (v *Vault) unmarkLive(ctx context.Context) {
	now := v.now().Truncate(liveSlot)
	for i := range 3 {
		_ = v.st.Delete(ctx, liveKey(now.Add(-time.Duration(i)*liveSlot), v.instance))
	}
}

// sweepLimiter deletes limiter counts past their keep time and live markers
// older than an hour. Sweep calls it (instead of the old per-mark scan).
func (v *Vault) sweepLimiter(ctx context.Context) error {
	if sc, ok := v.limiter.(*detect.StoreCounter); ok {
		if _, err := sc.Sweep(ctx, v.now()); err != nil {
			return fmt.Errorf("vault: sweep limiter: %w", err)
		}
	}
	cut := v.now().Add(-time.Hour).UnixNano()
	for k, err := range v.st.List(ctx, livePrefix) {
		if err != nil {
			return fmt.Errorf("vault: sweep live markers: %w", err)
		}
		i := strings.LastIndexByte(k, '/')
		if ts, err := strconv.ParseInt(k[i+1:], 10, 64); err == nil && ts < cut {
			if err := v.st.Delete(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("vault: sweep live markers: %w", err)
			}
		}
	}
	return nil
}

// restoreTimeout bounds one rebuild of lost counts.
const restoreTimeout = 10 * time.Minute

// restoreFlight is one rebuild of lost counts, shared by the requests that
// wait for it.
type restoreFlight struct {
	done chan struct{}
	err  error
}

// restoreCounts rebuilds the counts a Limiter lost (detect.ErrCountsLost:
// a Redis restart or FLUSHALL), from the audit log: one rebuild at a time
// per Vault, in the background, bounded by restoreTimeout and Close; the
// caller waits for it within ctx. Until it is done, every request that
// needs a count is refused, so lost counts are never a fresh quota.
func (v *Vault) restoreCounts(ctx context.Context) error {
	r, ok := v.limiter.(detect.Restorer)
	if !ok {
		return detect.ErrCountsLost
	}
	v.restoreMu.Lock()
	f := v.restoring
	if f == nil {
		f = &restoreFlight{done: make(chan struct{})}
		v.restoring = f
		v.bg.Go(func() {
			rctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
			defer cancel()
			go func() {
				select {
				case <-v.closed:
					cancel()
				case <-rctx.Done():
				}
			}()
			f.err = r.Restore(rctx, v.recount)
			v.restoreMu.Lock()
			v.restoring = nil
			v.restoreMu.Unlock()
			close(f.done)
		})
	}
	v.restoreMu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recount recounts, from the audit log, every event the detector counted
// in the last detect.RecountSince: grants (served, or refused by a count),
// redemptions, decisions and refused tokens and decisions, keyed as the
// detector keys them.
func (v *Vault) recount(ctx context.Context) ([]detect.SlotCount, error) {
	now := v.now()
	t := detect.NewTally(0)
	counted := func(r audit.Record) bool {
		return r.Outcome == audit.OutcomeOK || r.Reason == "quota-exceeded" || r.Reason == "frozen"
	}
	for r, err := range audit.Scan(ctx, v.st, audit.Filter{Since: now.Add(-detect.RecountSince)}) {
		if err != nil {
			return nil, fmt.Errorf("vault: recounting from the audit log: %w", err)
		}
		e := detect.Event{Time: r.Time}
		if r.Principal != "" {
			e.Principal = v.principalMAC(r.Principal)
		}
		switch {
		case r.Event == audit.EventGrant && counted(r):
			e.Kind = detect.View
		case r.Event == audit.EventRedeem && probeReasons[r.Reason]:
			e.Kind = detect.Refusal
			if host := remoteHost(r.RemoteAddr); host != "" {
				e.Addr = v.principalMAC("addr\x00" + host)
			}
		case r.Event == EventDecide && counted(r):
			e.Kind, e.HandedOn = detect.Decision, strings.HasPrefix(r.Detail, string(HandedOn))
		case r.Event == EventDecide && r.Reason == "not-viewed":
			e.Kind = detect.Refusal
		default:
			continue
		}
		t.Add(e)
	}
	return t.Counts(now), nil
}

// probeReasons are the audit reasons of refused tokens the detector
// counts (isProbe).
var probeReasons = map[string]bool{"token-invalid": true, "token-expired": true, "token-replayed": true, "wrong-principal": true}
