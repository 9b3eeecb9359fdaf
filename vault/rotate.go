package vault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Token-key rotation.
//
// A rotation writes the new keyset to the store before anything is sealed
// under the new key. An instance that meets a token naming a key it does
// not know reloads the keyset before refusing it (single-flight, at most
// one reload per keyReloadEvery; a request waits for a reload that started
// after it arrived), so a fresh token sealed under a just-rotated key
// always opens, however recently a forged token was refused. A forged
// token naming a known key costs no reload; one naming an unknown key costs
// at most one small GET per keyReloadEvery per instance (the KEK is used
// only when the keyset changed). Every instance also re-reads the keyset
// when it is older than keyRefresh, before opening or sealing a token, so
// a revocation takes effect everywhere within keyRefresh and no instance
// seals under a demoted key longer than that.
const (
	keyReloadEvery = 10 * time.Millisecond
	keyRefresh     = 10 * time.Second
	// keyRefreshTimeout bounds one periodic refresh (and at most half of a
	// caller's remaining deadline).
	keyRefreshTimeout = 5 * time.Second
	// keyRetireAfter: a demoted key may be retired once every token it can
	// have sealed is past its acceptance window on every clock.
	keyRetireAfter = MaxGrantTTLLimit + 2*MaxLeeway + keyRefresh + time.Minute
)

// tokenKeyTimesKey records when each token key stopped being primary
// ("<key id> <unix nanoseconds>" per line). It decides only when a key may
// be retired; a storage attacker who edits it can make that sooner or
// later, nothing else.
const tokenKeyTimesKey = "system/token-key-times"

// RotateOptions tune RotateTokenKey. The zero value rotates and retires
// nothing that can still open a valid token.
type RotateOptions struct {
	// Revoke retires every older token key at once: tokens sealed under
	// them stop opening on every instance within 10 s (their next keyset
	// refresh), including outstanding legitimate ones. Use it when a token
	// key may have leaked.
	Revoke bool
}

// RotateTokenKey adds a new token-sealing key and makes it primary, and
// retires older keys that can no longer open an unexpired token (demoted
// more than MaxGrantTTLLimit + 2*MaxLeeway + 70 s ago), or all of them with
// opts.Revoke. Tokens sealed under a kept older key still open until they
// expire; other instances pick the new key up the first time they meet a
// token sealed with it, and within 10 s in any case. Run it from one place
// at a time (a cron job, the CLI): two concurrent rotations keep only one
// of the two new keys. by is recorded in the audit log.
func (a Admin) RotateTokenKey(ctx context.Context, by Actor, opts RotateOptions) error {
	v := a.v
	if err := v.checkActor("rotate token key", by); err != nil {
		return err
	}
	cur, err := loadOrCreateSystemKeys(ctx, v.st, v.kek)
	if err != nil {
		return err
	}
	times, err := v.loadKeyTimes(ctx)
	if err != nil {
		return err
	}
	now := v.now()
	before := token.KeyIDs(cur.tokens)
	for i, id := range before {
		if _, ok := times[id]; !ok || i == 0 {
			times[id] = now // the primary is demoted now; unknown times count from now
		}
	}
	if cur.tokens, err = token.Rotate(cur.tokens); err != nil {
		return fmt.Errorf("vault: rotate token key: %w", err)
	}
	retired := 0
	cur.tokens, err = token.Retire(cur.tokens, func(id uint32) bool {
		t, ok := times[id]
		r := opts.Revoke || (ok && now.Sub(t) > keyRetireAfter)
		if r {
			retired++
		}
		return r
	})
	if err != nil {
		return fmt.Errorf("vault: rotate token key: %w", err)
	}
	kept := map[uint32]time.Time{}
	for _, id := range token.KeyIDs(cur.tokens)[1:] {
		kept[id] = times[id]
	}
	enc, err := cur.marshal(ctx, v.kek)
	if err != nil {
		return mapKEKErr(err)
	}
	detail := fmt.Sprintf("token key: retired %d kept %d", retired, len(kept))
	if opts.Revoke {
		detail = fmt.Sprintf("token key: revoked %d", retired)
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventRotate, Outcome: audit.OutcomeOK, Principal: by.principal(), Detail: clip(detail+": "+by.Reason, 500)}); err != nil {
		return err
	}
	tb := encodeKeyTimes(kept)
	if err := v.st.Put(ctx, tokenKeyTimesKey, bytes.NewReader(tb), int64(len(tb)), store.PutOptions{}); err != nil {
		return fmt.Errorf("vault: store token key times: %w", err)
	}
	if err := v.st.Put(ctx, systemKeysetKey, bytes.NewReader(enc), int64(len(enc)), store.PutOptions{}); err != nil {
		return fmt.Errorf("vault: store rotated keyset: %w", err)
	}
	v.rl.noteLoaded(v.now(), enc)
	return v.installKeys(cur)
}

func (v *Vault) loadKeyTimes(ctx context.Context) (map[uint32]time.Time, error) {
	times := map[uint32]time.Time{}
	b, err := getSmall(ctx, v.st, tokenKeyTimesKey, 64<<10)
	if errors.Is(err, store.ErrNotFound) {
		return times, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vault: load token key times: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		id, err1 := strconv.ParseUint(f[0], 10, 32)
		ns, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil {
			times[uint32(id)] = time.Unix(0, ns)
		}
	}
	return times, nil
}

func encodeKeyTimes(times map[uint32]time.Time) []byte {
	var b bytes.Buffer
	for id, t := range times {
		fmt.Fprintf(&b, "%d %d\n", id, t.UnixNano())
	}
	return b.Bytes()
}

// keyReloader serializes keyset reloads: one at a time, at most one start
// per keyReloadEvery (monotonic). Staleness (keyRefresh) is judged by the
// vault's clock, Config.Now.
type keyReloader struct {
	mu        sync.Mutex
	call      *reloadCall // in flight, or nil
	lastStart time.Time
	loadedAt  time.Time // when the installed keyset was last confirmed current
	lastBytes []byte    // its stored encoding
}

type reloadCall struct {
	start time.Time
	done  chan struct{}
	ok    bool
}

func (r *keyReloader) noteLoaded(now time.Time, enc []byte) {
	r.mu.Lock()
	r.loadedAt, r.lastBytes = now, bytes.Clone(enc)
	r.mu.Unlock()
}

// reloadKeysFor reloads the keyset with a read that starts no earlier than
// arrival and reports whether it succeeded. Concurrent callers share one
// read; a caller that arrived after the read in flight started waits for
// the next one.
func (v *Vault) reloadKeysFor(ctx context.Context, arrival time.Time) bool {
	return v.reloadKeysPaced(ctx, arrival, true)
}

// reloadKeysPaced is reloadKeysFor; paced false skips the wait between
// reloads, for the periodic refresh, which the vault clock already spaces
// (at most one per keyRefresh) and which no forged token can trigger.
func (v *Vault) reloadKeysPaced(ctx context.Context, arrival time.Time, paced bool) bool {
	r := &v.rl
	for {
		r.mu.Lock()
		if c := r.call; c != nil {
			r.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return false
			}
			if !c.start.Before(arrival) {
				return c.ok
			}
			continue
		}
		wait := keyReloadEvery - time.Since(r.lastStart)
		if !paced {
			wait = 0
		}
		c := &reloadCall{done: make(chan struct{})}
		r.call = c
		r.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.mu.Lock()
				r.call = nil
				r.mu.Unlock()
				close(c.done)
				return false
			}
		}
		c.start = time.Now()
		r.mu.Lock()
		r.lastStart = c.start
		r.mu.Unlock()
		c.ok = v.reloadKeys(ctx)
		r.mu.Lock()
		r.call = nil
		r.mu.Unlock()
		close(c.done)
		return c.ok
	}
}

// reloadKeys re-reads the keyset from the store and installs it if it
// changed (the KEK is used only then).
func (v *Vault) reloadKeys(ctx context.Context) bool {
	enc, err := getSmall(ctx, v.st, systemKeysetKey, maxSystemObject)
	if err != nil {
		return false
	}
	r := &v.rl
	r.mu.Lock()
	same := bytes.Equal(enc, r.lastBytes)
	r.mu.Unlock()
	if !same {
		sys, err := unmarshalSystemKeys(ctx, v.kek, enc)
		if err != nil || v.installKeys(sys) != nil {
			return false
		}
	}
	r.noteLoaded(v.now(), enc)
	return true
}

// refreshKeys reloads the keyset when it was last confirmed more than
// keyRefresh ago (by Config.Now), joining a reload in flight. A failure
// keeps the installed keyset; ctx bounds the wait.
func (v *Vault) refreshKeys(ctx context.Context) {
	r := &v.rl
	r.mu.Lock()
	stale := v.now().Sub(r.loadedAt) > keyRefresh
	r.mu.Unlock()
	if stale {
		// A KEK that hangs must not take the caller's whole deadline: the
		// refresh gets half of what is left (5 s at most), and the
		// request goes on with the keys it has.
		left := keyRefreshTimeout
		if dl, ok := ctx.Deadline(); ok {
			left = min(left, time.Until(dl)/2)
		}
		rctx, cancel := context.WithTimeout(ctx, left)
		defer cancel()
		v.reloadKeysPaced(rctx, time.Time{}, false)
	}
}
