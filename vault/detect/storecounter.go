package detect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/store"
)

// NewStoreCounter returns a Counter kept in st, shared by every process
// that uses the same store, under prefix (e.g. "counts").
//
// A count is a run of create-only ticket objects,
// <prefix>/<forget-hour>/<key>/<slot>/<n>: Add creates the first absent n
// (IfAbsent, so of concurrent Adds each gets its own n) and Get finds the
// last present one. Both start from the last n this process saw, so an Add
// is one conditional PUT when one process is busy, plus a few when several
// race, and a Get one GET; a process that fell behind catches up with a
// galloping search (O(log gap) GETs). Nothing lists a growing window.
// Objects are empty; their names carry no principal (the detector passes
// keyed hashes). Sweep deletes slots past their keep time, in name order,
// listing only what it deletes.
func NewStoreCounter(st store.Store, prefix string) *StoreCounter {
	return &StoreCounter{st: st, prefix: strings.TrimSuffix(prefix, "/") + "/", hints: newSlotCache(1 << 16)}
}

// StoreCounter is the Counter returned by NewStoreCounter.
type StoreCounter struct {
	st     store.Store
	prefix string
	hints  *slotCache // last n seen per key and slot
	// Adds of one key in this process take turns, so they do not race
	// each other for the same ticket (only other processes can).
	stripes [256]sync.Mutex
}

// forgetHour is the hour after which a slot may be deleted: the hour after
// slot+keep, or for slots kept a day or more the midnight (UTC) after it.
// Slots sharing a forget hour share a listing prefix, so reading a cold
// window of hour slots (a key not seen before: a new principal or
// address) is two or three listings, not one per hour; the price is
// keeping such slots up to a day longer.
func forgetHour(slot time.Time, keep time.Duration) string {
	t := slot.Add(keep).UTC()
	if keep >= 24*time.Hour {
		return t.Truncate(24 * time.Hour).Add(24 * time.Hour).Format("2006010215")
	}
	return t.Truncate(time.Hour).Add(time.Hour).Format("2006010215")
}

func (c *StoreCounter) base(key string, slot time.Time, fh string) string {
	return c.prefix + fh + "/" + key + "/" + strconv.FormatInt(slot.Unix(), 10) + "/"
}

func (c *StoreCounter) exists(ctx context.Context, k string) (bool, error) {
	rc, err := c.st.Get(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("detect: counter: %w", err)
	}
	rc.Close()
	return true, nil
}

// last returns the highest n present under base, starting from a known
// present n (0: none known).
func (c *StoreCounter) last(ctx context.Context, base string, from int64) (int64, error) {
	lo := from // present (or 0)
	step := int64(1)
	hi := lo + step
	for {
		ok, err := c.exists(ctx, base+strconv.FormatInt(hi, 10))
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo = hi
		step *= 2
		hi = lo + step
	}
	// lo present, hi absent: tickets are dense (each is created only after
	// its predecessor was seen), so binary search the boundary.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := c.exists(ctx, base+strconv.FormatInt(mid, 10))
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Add implements Counter.
func (c *StoreCounter) Add(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	base := c.base(key, slot, forgetHour(slot, keep))
	if err := store.ValidKey(base + "1"); err != nil {
		return 0, fmt.Errorf("detect: counter key: %w", err)
	}
	mu := &c.stripes[fnv(base)%uint32(len(c.stripes))]
	mu.Lock()
	defer mu.Unlock()
	n, _ := c.hints.get(base, slot)
	for {
		n++
		err := c.st.Put(ctx, base+strconv.FormatInt(n, 10), bytes.NewReader(nil), 0, store.PutOptions{IfAbsent: true})
		if err == nil {
			c.hints.put(base, slot, n)
			return n, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return 0, fmt.Errorf("detect: counter: %w", err)
		}
		// Someone else holds n: find the end of the run and try after it.
		last, err := c.last(ctx, base, n)
		if err != nil {
			return 0, err
		}
		n = last
	}
}

// Get implements Counter.
func (c *StoreCounter) Get(ctx context.Context, key string, slot time.Time, keep time.Duration) (int64, error) {
	base := c.base(key, slot, forgetHour(slot, keep))
	if err := store.ValidKey(base + "1"); err != nil {
		return 0, fmt.Errorf("detect: counter key: %w", err)
	}
	from, _ := c.hints.get(base, slot)
	n, err := c.last(ctx, base, from)
	if err != nil {
		return 0, err
	}
	c.hints.put(base, slot, n)
	return n, nil
}

// Sweep deletes the counts whose keep time has passed before now. It lists
// the counter's prefix in name order and stops at the first forget-hour
// still to come.
func (c *StoreCounter) Sweep(ctx context.Context, now time.Time) (int, error) {
	cut := now.UTC().Truncate(time.Hour).Format("2006010215")
	n := 0
	for k, err := range c.st.List(ctx, c.prefix) {
		if err != nil {
			return n, fmt.Errorf("detect: counter sweep: %w", err)
		}
		fh, _, _ := strings.Cut(strings.TrimPrefix(k, c.prefix), "/")
		if fh > cut {
			break
		}
		if err := c.st.Delete(ctx, k); err != nil {
			return n, fmt.Errorf("detect: counter sweep: %w", err)
		}
		n++
	}
	return n, nil
}

// Range implements Ranger: the counts of key's slots from..to (step
// width) with one LIST per forget-hour they span, so a detector warming
// its cache for a window pays a LIST or two, not a GET per slot.
func (c *StoreCounter) Range(ctx context.Context, key string, from, to time.Time, width, keep time.Duration) ([]int64, error) {
	if to.Before(from) {
		return nil, nil
	}
	out := make([]int64, int(to.Sub(from)/width)+1)
	seen := map[string]bool{}
	for s := from; !s.After(to); s = s.Add(width) {
		fh := forgetHour(s, keep)
		if seen[fh] {
			continue
		}
		seen[fh] = true
		prefix := c.prefix + fh + "/" + key + "/"
		if err := store.ValidPrefix(prefix); err != nil {
			return nil, fmt.Errorf("detect: counter key: %w", err)
		}
		for k, err := range c.st.List(ctx, prefix) {
			if err != nil {
				return nil, fmt.Errorf("detect: counter: %w", err)
			}
			ss, ns, ok := strings.Cut(strings.TrimPrefix(k, prefix), "/")
			if !ok {
				continue
			}
			sec, err1 := strconv.ParseInt(ss, 10, 64)
			n, err2 := strconv.ParseInt(ns, 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			t := time.Unix(sec, 0)
			if t.Before(from) || t.After(to) || t.Sub(from)%width != 0 {
				continue
			}
			i := int(t.Sub(from) / width)
			out[i] = max(out[i], n)
		}
	}
	return out, nil
}
