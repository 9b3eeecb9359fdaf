package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Holds and freezes live in the state chain (audit.StatePrefix): one
// hash-linked sequence of signed, create-only (and, where the store allows,
// write-once) entries shared by every instance. A legal hold, its release,
// the freeze of a principal and its lifting are each one entry, written
// before the key record or anything else that acts on it. Every instance
// reads the whole chain at Open and follows it (every viewPollEvery, and before
// each decision that depends on it when its view is older than
// chainFresh), and never forgets what it has read.
//
// What the state of a document's hold is, is then decided from the chain
// and the key record together (resolveHold): they must agree. What an
// attacker who can write the store can do about it:
//
//   - put back an older key record: it disagrees with the chain: in doubt,
//     the document is neither shredded nor served past its deadline, and
//     AlertTampered is raised;
//   - delete, replace or reorder an entry with later ones after it: the
//     chain no longer links: every decision that depends on it is in doubt
//     (nothing is shredded, nothing served past a deadline, every grant
//     and redemption refused, since nobody knows who is frozen) until an
//     operator restores the entry;
//   - delete the newest entries: an instance that read them keeps them;
//     an instance that starts later compares the chain with the state-head
//     witness records in the audit logs (logview.go), and a chain shorter
//     than a head the logs vouch for is broken as above. On an
//     object-locked bucket the entries are write-once, and a delete marker
//     that hides one is read through (store.VersionReader).
//
// The small objects of earlier versions (holds/<id>/<seq> markers,
// frozen/<principal>) are no longer written or read.

// errStateInDoubt: the state chain is broken or could not be read, so a
// decision that depends on a hold or a freeze cannot be made.
var errStateInDoubt = fmt.Errorf("vault: legal hold and freeze state in doubt (the state chain is broken or unreadable): %w", ErrTampered)

const (
	// chainFresh: a decision that depends on the chain reads new entries
	// first when the view is older than this.
	chainFresh = 100 * time.Millisecond
	// chainAppendAttempts bounds the retries of an append that lost the
	// race for a sequence number.
	chainAppendAttempts = 16
)

type chainHold struct {
	held bool
	seq  int64
}

// stateChain is this instance's view of the state chain, and its writer.
type stateChain struct {
	v      *Vault
	signer *audit.StateSigner
	hs     *hiddenStore // what r reads through

	mu ctxLock // serializes reading and appending; guards r
	r  *audit.StateReader

	smu     sync.RWMutex // guards the fields below
	holds   map[objectID]chainHold
	frozen  map[string]int64 // principal MAC → seq of its freeze
	broken  error            // not nil: every decision on the chain is in doubt
	length  int64            // entries read
	head    audit.StateHash  // hash of the last one
	synced  time.Time        // monotonic: when the last complete read started
	alerted bool
}

func newStateChain(v *Vault, sys *systemKeys) (*stateChain, error) {
	signer, err := audit.NewStateSigner(sys.auditSigner)
	if err != nil {
		return nil, err
	}
	hs := newHiddenStore(v.st)
	r, err := audit.NewStateReader(hs, sys.auditVerifier)
	if err != nil {
		return nil, err
	}
	return &stateChain{v: v, signer: signer, hs: hs, r: r, mu: newCtxLock(), holds: map[objectID]chainHold{}, frozen: map[string]int64{}}, nil
}

// load reads the whole chain (Open) and checks that no entry is missing
// before its end.
func (c *stateChain) load(ctx context.Context) error {
	hidden, err := c.hs.hiddenUnder(ctx, audit.StatePrefix)
	if err != nil {
		return fmt.Errorf("vault: reading the state chain: %w", err)
	}
	if hidden {
		if err := c.followHidden(ctx); err != nil {
			return err
		}
	} else if err := c.follow(ctx); err != nil {
		return err
	}
	if err := c.mu.lock(ctx); err != nil {
		return err
	}
	err = c.r.CheckGap(ctx)
	c.mu.unlock()
	if errors.Is(err, audit.ErrStateBroken) {
		c.setBroken(ctx, err)
		return nil
	}
	return err
}

// follow reads the entries written since the last read. A broken chain is
// not an error of follow (it is recorded and alerted); a store error is.
func (c *stateChain) follow(ctx context.Context) error {
	if err := c.mu.lock(ctx); err != nil {
		return err
	}
	defer c.mu.unlock()
	return c.followLocked(ctx)
}

func (c *stateChain) followLocked(ctx context.Context) error {
	if c.isBroken() {
		return nil
	}
	// The read sees every entry written before it started: that is the
	// time the view is fresh as of.
	started := time.Now()
	_, err := c.r.Next(ctx, func(e audit.StateEntry, _ []byte) error {
		c.apply(e)
		return nil
	})
	if errors.Is(err, audit.ErrStateBroken) {
		c.setBroken(ctx, err)
		return nil
	}
	if err != nil {
		return err
	}
	c.smu.Lock()
	c.length, c.head = c.r.Len(), c.r.Head()
	if started.After(c.synced) {
		c.synced = started
	}
	c.smu.Unlock()
	return nil
}

// followHidden is follow reading through delete markers (hiddenStore),
// alerting when it found entries hidden behind one.
func (c *stateChain) followHidden(ctx context.Context) error {
	var err error
	if n := c.hs.recovering(func() { err = c.follow(ctx) }); n > 0 {
		c.v.alert(ctx, Alert{Kind: AlertTampered, Detail: fmt.Sprintf("%d state chain entries hidden behind delete markers: read through; find who deleted them", n)})
	}
	return err
}

// fresh makes sure the view is at most chainFresh old: it holds every
// entry written before a read that started at most chainFresh ago, or one
// that started after this call did. Concurrent callers share a read: one
// that waited for the lock while another read is served by that read, if
// it started after this call (a read that started earlier may have missed
// an entry written just before this call, so it does not count).
func (c *stateChain) fresh(ctx context.Context) error {
	called := time.Now()
	isFresh := func() bool {
		c.smu.RLock()
		defer c.smu.RUnlock()
		return !c.synced.IsZero() && (time.Since(c.synced) < chainFresh || !c.synced.Before(called))
	}
	if isFresh() {
		return nil
	}
	if err := c.mu.lock(ctx); err != nil {
		return fmt.Errorf("vault: reading the state chain: %w", err)
	}
	defer c.mu.unlock()
	if isFresh() {
		return nil
	}
	if err := c.followLocked(ctx); err != nil {
		return fmt.Errorf("vault: reading the state chain: %w", err)
	}
	return nil
}

func (c *stateChain) apply(e audit.StateEntry) {
	c.smu.Lock()
	defer c.smu.Unlock()
	switch e.Kind {
	case audit.StateHold, audit.StateRelease:
		id, err := parseObjectID(e.Target)
		if err == nil {
			c.holds[id] = chainHold{held: e.Kind == audit.StateHold, seq: e.Seq}
		}
	case audit.StateFreeze:
		c.frozen[e.Target] = e.Seq
	case audit.StateUnfreeze:
		delete(c.frozen, e.Target)
	}
}

func (c *stateChain) isBroken() bool {
	c.smu.RLock()
	defer c.smu.RUnlock()
	return c.broken != nil
}

// setBroken records that the chain cannot be trusted, and alerts once.
func (c *stateChain) setBroken(ctx context.Context, err error) {
	c.smu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	alert := !c.alerted
	c.alerted = true
	c.smu.Unlock()
	if alert {
		c.v.alert(ctx, Alert{Kind: AlertTampered, Detail: "state chain broken: legal holds and freezes in doubt; nothing shredded, grants and redemptions refused until an operator restores it"})
	}
}

// state returns the chain's length and the hash of its last entry.
func (c *stateChain) state() (int64, audit.StateHash, error) {
	c.smu.RLock()
	defer c.smu.RUnlock()
	return c.length, c.head, c.broken
}

// hold returns the chain's word on id: seen is false when no entry names
// it. The error wraps errStateInDoubt when the chain is broken.
func (c *stateChain) hold(ctx context.Context, id objectID) (held, seen bool, err error) {
	err = c.lookup(ctx, func() {
		var h chainHold
		h, seen = c.holds[id]
		held = h.held
	})
	return held, seen, err
}

// isFrozen reports whether the principal with keyed hash mac is frozen;
// errStateInDoubt when the chain is broken.
func (c *stateChain) isFrozen(ctx context.Context, mac string) (frozen bool, err error) {
	err = c.lookup(ctx, func() { _, frozen = c.frozen[mac] })
	return frozen, err
}

// lookup reads new entries first (fresh), then runs f under the read lock;
// errStateInDoubt, without running f, when the chain is broken.
func (c *stateChain) lookup(ctx context.Context, f func()) error {
	if err := c.fresh(ctx); err != nil {
		return err
	}
	c.smu.RLock()
	defer c.smu.RUnlock()
	if c.broken != nil {
		return errStateInDoubt
	}
	f()
	return nil
}

// frozenNow is isFrozen without reading new entries first.
func (c *stateChain) frozenNow(mac string) (bool, error) {
	c.smu.RLock()
	defer c.smu.RUnlock()
	_, ok := c.frozen[mac]
	return ok, c.broken
}

// append writes the next entry of the chain: kind of target. Of concurrent
// appenders on any instance each gets its own sequence number (create-only
// writes), and each entry names the one before it. It returns the entry as
// written. An error leaves the state unchanged in this instance's view;
// the entry may still have been written (an ambiguous store error), in
// which case the next read takes it in.
func (c *stateChain) append(ctx context.Context, kind audit.StateKind, target string) (audit.StateEntry, error) {
	return c.appendUnless(ctx, kind, target, nil)
}

// errStateUnchanged: appendUnless found the change already made.
var errStateUnchanged = errors.New("vault: state unchanged")

// appendUnless is append, except that it writes nothing and returns
// errStateUnchanged when done reports true once the chain is read up to
// its end (checked again after every lost race).
func (c *stateChain) appendUnless(ctx context.Context, kind audit.StateKind, target string, done func() bool) (audit.StateEntry, error) {
	if err := c.mu.lock(ctx); err != nil {
		return audit.StateEntry{}, fmt.Errorf("vault: state chain: %w", err)
	}
	defer c.mu.unlock()
	for range chainAppendAttempts {
		if err := c.followLocked(ctx); err != nil {
			return audit.StateEntry{}, fmt.Errorf("vault: state chain: %w", err)
		}
		if c.isBroken() {
			return audit.StateEntry{}, errStateInDoubt
		}
		if done != nil && done() {
			return audit.StateEntry{}, errStateUnchanged
		}
		e := c.r.MakeStateEntry(c.v.now(), kind, target)
		b, err := c.signer.Sign(e)
		if err != nil {
			return audit.StateEntry{}, fmt.Errorf("vault: state chain: %w", err)
		}
		err = c.v.putWriteOnce(ctx, audit.StateKey(e.Seq), b)
		if errors.Is(err, store.ErrExists) {
			continue // another writer took the number: read it, try the next
		}
		if err != nil {
			return audit.StateEntry{}, fmt.Errorf("vault: state chain: %w", err)
		}
		e, err = c.r.Accept(b)
		if err != nil {
			return audit.StateEntry{}, fmt.Errorf("vault: state chain: %w", err)
		}
		c.apply(e)
		c.smu.Lock()
		c.length, c.head = c.r.Len(), c.r.Head()
		c.smu.Unlock()
		return e, nil
	}
	return audit.StateEntry{}, fmt.Errorf("vault: state chain: %d concurrent writers won the race: %w", chainAppendAttempts, store.ErrExists)
}

// putWriteOnce writes a create-only object that is write-once for
// Config.Audit.Retention where the store supports it.
func (v *Vault) putWriteOnce(ctx context.Context, key string, b []byte) error {
	opts := store.PutOptions{IfAbsent: true}
	if v.cfg.Audit.Retention > 0 {
		opts.RetainUntil = v.now().Add(v.cfg.Audit.Retention)
	}
	err := v.st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts)
	if errors.Is(err, store.ErrRetentionUnsupported) && !opts.RetainUntil.IsZero() {
		opts.RetainUntil = time.Time{}
		err = v.st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts)
	}
	return err
}
