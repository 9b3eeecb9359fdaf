package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/store"
)

// DefaultLeaseTTL is the default AppenderOptions.LeaseTTL.
const DefaultLeaseTTL = 30 * time.Second

// maxAdopt bounds how many idle logs NewAppender tries before it starts a
// new one.
const maxAdopt = 8

// clockSlack is what a store.Clock reading may lag behind (see store.Clock).
const clockSlack = 2 * time.Second

// leaseNow returns the time a lease's expiry is judged by: the store's
// when it tells one, else the appender's. ok is false when the store has a
// clock that cannot be read: nobody's live lease may be judged expired
// then.
func (a *Appender) leaseNow(ctx context.Context) (now time.Time, ok bool) {
	t, has, err := a.st.clockTime(ctx)
	switch {
	case !has:
		return a.opts.Now(), true
	case err != nil:
		return time.Time{}, false
	}
	return t, true
}

// leaseExpiry returns the expiry of a lease written now: LeaseTTL after the
// store's time when it tells one, else after the appender's (also when the
// store's clock cannot be read: a wrong expiry on our own lease makes
// others wait longer, or take over sooner, where the batches' create-only
// writes keep the log consistent).
func (a *Appender) leaseExpiry(ctx context.Context) time.Time {
	now, ok := a.leaseNow(ctx)
	if !ok {
		now = a.opts.Now()
	}
	return now.Add(a.opts.LeaseTTL)
}

// verifierOf returns the verifier of a note signer key (Ed25519).
func verifierOf(signerKey string) (note.Verifier, error) {
	parts := strings.SplitN(signerKey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, errors.New("audit: signer key is not a valid note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("audit: signer key is not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// loaded is the state of a log an appender is about to continue.
type loaded struct {
	f      frontier   // every record
	cp     checkpoint // the latest valid checkpoint (tree.N 0: none)
	closed bool       // cp is final and not reopened: the next batch needs a reopen checkpoint
}

// errNotContinuable: the log is damaged, or someone else's: leave it to
// Verify.
var errNotContinuable = errors.New("audit: log cannot be continued")

// loadLog reads what an appender needs to continue log. from is the
// frontier a lease carried: when its root matches a signed checkpoint of
// its size, only the batches after it are read, by name, with the
// checkpoints at their boundaries (a handful of GETs for a log closed
// cleanly, whatever its length). Otherwise loadLogFull reads the whole log.
func (a *Appender) loadLog(ctx context.Context, log string, from frontier) (loaded, error) {
	if from.n == 0 {
		return a.loadLogFull(ctx, log, frontier{})
	}
	var ld loaded
	at := func(n int64) (plain, final, reopen *checkpoint, err error) {
		for _, k := range []struct {
			key string
			dst **checkpoint
		}{{checkpointKey(log, n, false), &plain}, {checkpointKey(log, n, true), &final}, {reopenKey(log, n), &reopen}} {
			c, ok, err := a.checkpointAt(ctx, k.key, log, n)
			if err != nil {
				return nil, nil, nil, err
			}
			if ok {
				*k.dst = &c
			}
		}
		return
	}
	plain, final, reopen, err := at(from.n)
	if err != nil {
		return ld, err
	}
	var base *checkpoint
	for _, c := range []*checkpoint{plain, final} {
		if c != nil && c.tree.Hash == from.root() {
			base = c
		}
	}
	if base == nil {
		return a.loadLogFull(ctx, log, frontier{})
	}
	ld.cp, ld.f = *base, from.clone()
	if reopen != nil && reopen.tree.Hash == from.root() {
		ld.cp = *reopen
	}
	closedAt := func(final, reopen *checkpoint) bool { return final != nil && reopen == nil }
	baseClosed := closedAt(final, reopen)
	var r Record
	for {
		key := batchKey(log, ld.f.n)
		rc, err := a.st.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return ld, err
		}
		if err := ld.absorb(rc, log, &r, false); err != nil {
			return ld, err
		}
		if baseClosed {
			// Records after a final checkpoint without a reopen: not ours
			// to sign.
			return ld, errNotContinuable
		}
		// Checkpoints a crashed writer signed in the tail: they must agree,
		// and the next one must not be older.
		plain, final, reopen, err := at(ld.f.n)
		if err != nil {
			return ld, err
		}
		for _, c := range []*checkpoint{plain, final, reopen} {
			if c == nil {
				continue
			}
			if c.tree.Hash != ld.f.root() {
				return ld, errNotContinuable
			}
			if !c.time.Before(ld.cp.time) {
				ld.cp = *c
			}
		}
		baseClosed = closedAt(final, reopen)
	}
	ld.closed = ld.cp.final
	return ld, nil
}

// checkpointAt reads and checks the checkpoint stored under key, which
// must be of log at size n; ok is false when it is absent or invalid.
func (a *Appender) checkpointAt(ctx context.Context, key, log string, n int64) (checkpoint, bool, error) {
	msg, err := readSmall(ctx, a.st, key, maxCheckpointLen)
	if errors.Is(err, store.ErrNotFound) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, err
	}
	c, _, err := openCheckpoint(msg, note.VerifierList(a.verifier))
	if err != nil || c.log != log || c.tree.N != n || key != checkpointKeyOf(c) {
		return checkpoint{}, false, nil
	}
	return c, true, nil
}

// loadLogFull reads the whole log: every checkpoint and every record.
func (a *Appender) loadLogFull(ctx context.Context, log string, from frontier) (loaded, error) {
	known := note.VerifierList(a.verifier)
	var ld loaded
	var start frontier
	finalAt, reopenAt := int64(-1), int64(-1)
	cpPrefix := checkpointPrefix(log)
	for key, err := range a.st.List(ctx, cpPrefix) {
		if err != nil {
			return ld, err
		}
		msg, err := readSmall(ctx, a.st, key, maxCheckpointLen)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return ld, err
		}
		c, _, err := openCheckpoint(msg, known)
		if err != nil || c.log != log || key != checkpointKeyOf(c) || c.tree.N < ld.cp.tree.N || c.time.Before(ld.cp.time) {
			return ld, errNotContinuable
		}
		ld.cp = c
		switch {
		case c.final:
			finalAt = c.tree.N
		case c.reopen:
			reopenAt = c.tree.N
		}
		if from.n > 0 && c.tree.N == from.n && !c.reopen && from.root() == c.tree.Hash {
			start = from.clone()
		}
	}
	ld.closed = finalAt >= 0 && finalAt == ld.cp.tree.N && reopenAt != finalAt
	ld.f = start
	prefix := logPrefix(log)
	var r Record
	for key, err := range a.st.List(ctx, prefix) {
		if err != nil {
			return ld, err
		}
		first, ok := parseSeqName(key[len(prefix):])
		if !ok {
			if strings.HasPrefix(key[len(prefix):], "checkpoints/") {
				continue
			}
			return ld, errNotContinuable
		}
		if first < ld.f.n {
			continue
		}
		if first != ld.f.n {
			return ld, errNotContinuable
		}
		rc, err := a.st.Get(ctx, key)
		if err != nil {
			return ld, err
		}
		if err := ld.absorb(rc, log, &r, true); err != nil {
			return ld, err
		}
	}
	if ld.f.n < ld.cp.tree.N || (ld.f.n == ld.cp.tree.N && ld.f.root() != ld.cp.tree.Hash) {
		return ld, errNotContinuable
	}
	if finalAt >= 0 && finalAt == ld.cp.tree.N && reopenAt != finalAt && ld.f.n > finalAt {
		// Records after a final checkpoint without a reopen: not ours to sign.
		return ld, errNotContinuable
	}
	return ld, nil
}

// adopt tries to lease an idle registered log and continue it; it reports
// whether it did. Only errors of the store are returned.
func (a *Appender) adopt(ctx context.Context) (bool, error) {
	tried := 0
	for key, err := range a.st.List(ctx, registryPrefix) {
		if err != nil {
			return false, err
		}
		if tried >= maxAdopt {
			break
		}
		log := key[len(registryPrefix):]
		if !ValidLogID(log) {
			continue
		}
		// Only a log this key registered: another key's log is not ours to
		// sign.
		msg, err := readSmall(ctx, a.st, key, maxCheckpointLen)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return false, err
		}
		if r, _, err := openRegistration(msg, note.VerifierList(a.verifier)); err != nil || r.log != log {
			continue
		}
		l, gen, _, err := latestLease(ctx, a.st, log, note.VerifierList(a.verifier))
		if err != nil {
			return false, err
		}
		if gen >= 0 && !l.released {
			// Live (or closing) until its expiry, on the store's clock when
			// it has one: an instance whose own clock runs ahead must not
			// take a log its writer still holds.
			now, ok := a.leaseNow(ctx)
			if !ok || now.Before(l.expires.Add(clockSlack)) {
				continue // held, or we cannot tell
			}
		}
		tried++
		mine := lease{log: log, holder: a.holder, expires: a.leaseExpiry(ctx), f: l.f}
		lmsg, err := mine.sign(a.signer)
		if err != nil {
			return false, err
		}
		if err := a.st.Put(ctx, leaseKey(log, gen+1), bytes.NewReader(lmsg), int64(len(lmsg)), store.PutOptions{IfAbsent: true}); err != nil {
			if errors.Is(err, store.ErrExists) {
				continue // someone else took it
			}
			return false, err
		}
		ld, err := a.loadLog(ctx, log, l.f)
		if err == nil && l.closing && !ld.closed && l.f.n > 0 && ld.f.n == l.f.n && ld.f.root() == l.f.root() {
			// Its writer was closing it at exactly these records and may
			// still write the final checkpoint: write it first (whichever
			// lands first is kept), so that it can never land after our
			// records.
			err = a.completeClose(ctx, log, &ld)
		}
		if errors.Is(err, errNotContinuable) {
			continue // our lease expires; Verify will say what is wrong
		}
		if err != nil {
			return false, err
		}
		a.continueLog(log, gen+1, ld)
		if gen >= 0 {
			_ = a.st.Delete(ctx, leaseKey(log, gen)) // history; keep the store small
		}
		if ld.f.n > ld.cp.tree.N {
			// A crashed writer's unsealed tail: seal it now.
			if err := a.writeCheckpoints(ctx, false); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// completeClose writes the final checkpoint of ld's records on behalf of
// the writer whose closing lease expired, and makes ld a closed log. If
// that writer's own final checkpoint landed first, it is read back and
// used (it signs the same tree).
func (a *Appender) completeClose(ctx context.Context, log string, ld *loaded) error {
	tree := ld.f.tree()
	t := a.opts.Now().Round(0).UTC()
	if t.Before(ld.cp.time) {
		t = ld.cp.time
	}
	c := checkpoint{log: log, tree: tree, time: t, final: true}
	msg, err := signCheckpoint(c, a.signer)
	if err != nil {
		return err
	}
	key := checkpointKey(log, tree.N, true)
	err = a.put(ctx, key, msg)
	if errors.Is(err, store.ErrExists) {
		got, ok, rerr := a.checkpointAt(ctx, key, log, tree.N)
		switch {
		case rerr != nil:
			return rerr
		case !ok || got.tree != tree:
			return errNotContinuable
		}
		c, err = got, nil
	}
	if err != nil {
		return err
	}
	ld.cp, ld.closed = c, true
	return nil
}

// continueLog makes the appender write log from the state ld, under lease
// generation gen.
func (a *Appender) continueLog(log string, gen int64, ld loaded) {
	a.w = logState{id: log, f: ld.f, ready: true, reopen: ld.closed}
	a.cur = logTree{log: log, tree: ld.f.tree(), f: ld.f}
	a.curCP = ld.cp.tree.N
	if ld.cp.tree.N > 0 {
		a.lastCP[log] = ld.cp
	}
	a.lease = leaseState{log: log, gen: gen, renewed: a.opts.Now()}
	if ld.cp.tree.N == ld.f.n {
		a.lease.f = ld.f.clone()
	}
}

// leaseState is the appender's lease on its current log; leaseMu guards it.
type leaseState struct {
	log     string
	gen     int64
	renewed time.Time
	f       frontier // the frontier at the last checkpoint, for the next holder
	lost    bool     // someone else took the log: move on before the next batch
}

// takeLease writes generation 0 of a new log's lease.
func (a *Appender) takeLease(ctx context.Context, log string) error {
	l := lease{log: log, holder: a.holder, expires: a.leaseExpiry(ctx)}
	msg, err := l.sign(a.signer)
	if err != nil {
		return err
	}
	err = a.st.Put(ctx, leaseKey(log, 0), bytes.NewReader(msg), int64(len(msg)), store.PutOptions{IfAbsent: true})
	if errors.Is(err, store.ErrExists) {
		// An earlier attempt of ours that reported failure (the ID is new).
		err = nil
	}
	if err != nil {
		return err
	}
	a.leaseMu.Lock()
	a.lease = leaseState{log: log, gen: 0, renewed: a.opts.Now()}
	a.leaseMu.Unlock()
	return nil
}

// renewLease writes the next lease generation when a third of the TTL has
// passed. Losing the race means another appender took the log: the writer
// moves on.
func (a *Appender) renewLease(ctx context.Context) {
	a.renewMu.Lock() // one renewal at a time; the writer only reads lost
	defer a.renewMu.Unlock()
	a.leaseMu.Lock()
	ls := a.lease
	a.leaseMu.Unlock()
	if ls.log == "" || ls.lost || a.opts.Now().Sub(ls.renewed) < a.opts.LeaseTTL/3 {
		return
	}
	_ = a.writeLease(ctx, ls, lease{log: ls.log, holder: a.holder, expires: a.leaseExpiry(ctx), f: ls.f})
}

var (
	errLeaseLost  = errors.New("audit: another appender took the log")
	errLeaseMoved = errors.New("audit: the appender moved to another log")
)

// writeLease writes l as the generation after ls. It returns errLeaseLost
// (and marks the lease lost) when that generation exists: someone else
// took the log. renewMu is held.
func (a *Appender) writeLease(ctx context.Context, ls leaseState, l lease) error {
	msg, err := l.sign(a.signer)
	if err != nil {
		return err
	}
	err = a.st.Put(ctx, leaseKey(ls.log, ls.gen+1), bytes.NewReader(msg), int64(len(msg)), store.PutOptions{IfAbsent: true})
	a.leaseMu.Lock()
	switch {
	case a.lease.log != ls.log || a.lease.gen != ls.gen:
		err = errLeaseMoved // the writer moved to another log meanwhile
	case errors.Is(err, store.ErrExists):
		a.lease.lost = true
		err = errLeaseLost
	case err == nil:
		a.lease.gen++
		a.lease.renewed = a.opts.Now()
		a.lease.f = l.f
	}
	a.leaseMu.Unlock()
	if err == nil {
		// Older generations are history; keep the store small.
		_ = a.st.Delete(ctx, leaseKey(ls.log, ls.gen))
	}
	return err
}

// newerLease reports whether log has a lease generation after gen: a
// holder that took the log from one we did not see, and renewed past it
// (deleting the generation we then created again).
func (a *Appender) newerLease(ctx context.Context, log string, gen int64) (bool, error) {
	newer := false
	err := a.st.scan(ctx, leaseDir(log), func(k string) bool {
		g, ok := parseSeqName(k[len(leaseDir(log)):])
		newer = ok && g > gen
		return !newer
	})
	return newer && err == nil, err
}

// closeLog ends the appender's hold on its current log cur at Close: under
// a closing lease generation, the final checkpoint, then a released
// generation. An appender that no longer holds the log (another took it)
// writes no final checkpoint there, only a plain one where its records are
// not yet covered. cpMu is held.
func (a *Appender) closeLog(ctx context.Context, cur logTree) error {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()
	a.leaseMu.Lock()
	ls := a.lease
	a.leaseMu.Unlock()
	if ls.log == "" || ls.log != cur.log {
		// Moved on from the leased log (it is retired), and the current
		// one was never written.
		return nil
	}
	if ls.lost {
		return a.sealLost(ctx, cur)
	}
	if cur.tree.N == 0 {
		// A registered log whose only write failed: nothing to sign.
		_ = a.writeLease(ctx, ls, lease{log: ls.log, holder: a.holder, released: true})
		return nil
	}
	err := a.writeLease(ctx, ls, lease{log: ls.log, holder: a.holder, expires: a.leaseExpiry(ctx), closing: true, f: cur.f})
	if errors.Is(err, errLeaseLost) {
		return a.sealLost(ctx, cur)
	}
	if err != nil {
		return err
	}
	if newer, err := a.newerLease(ctx, ls.log, ls.gen+1); err != nil {
		return err
	} else if newer {
		a.leaseMu.Lock()
		a.lease.lost = true
		a.leaseMu.Unlock()
		return a.sealLost(ctx, cur)
	}
	if err := a.writeCheckpoint(ctx, cur, true); err != nil {
		// The closing generation expires; whoever continues the log
		// writes this final checkpoint (see completeClose).
		return err
	}
	a.leaseMu.Lock()
	ls = a.lease
	a.leaseMu.Unlock()
	// A failure leaves the closing generation, which expires; the final
	// checkpoint is there for whoever continues the log.
	_ = a.writeLease(ctx, ls, lease{log: ls.log, holder: a.holder, released: true, f: cur.f})
	return nil
}

// sealLost writes a plain checkpoint of lt, a log another appender may be
// writing now (or took over and left): only where no checkpoint of that
// size or larger is stored, and dated no earlier than the latest one
// stored, so that the log's checkpoints stay in time order whoever's clock
// runs ahead. cpMu is held.
func (a *Appender) sealLost(ctx context.Context, lt logTree) error {
	if lt.tree.N == 0 {
		return nil
	}
	prefix := checkpointPrefix(lt.log)
	var lastKey string
	if err := a.st.scan(ctx, prefix, func(k string) bool { lastKey = k; return true }); err != nil {
		return err
	}
	t := a.opts.Now().Round(0).UTC()
	if last, ok := a.lastCP[lt.log]; ok && t.Before(last.time) {
		t = last.time
	}
	if lastKey != "" {
		name := strings.TrimSuffix(strings.TrimSuffix(lastKey[len(prefix):], "-final"), "-reopen")
		if n, ok := parseSeqName(name); ok && n >= lt.tree.N {
			return nil // covered by a checkpoint of the log's holder
		}
		msg, err := readSmall(ctx, a.st, lastKey, maxCheckpointLen)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if c, _, err := openCheckpoint(msg, note.VerifierList(a.verifier)); err == nil && c.log == lt.log && t.Before(c.time) {
			t = c.time
		}
	}
	c := checkpoint{log: lt.log, tree: lt.tree, time: t}
	msg, err := signCheckpoint(c, a.signer)
	if err != nil {
		return err
	}
	if err := a.put(ctx, checkpointKey(lt.log, lt.tree.N, false), msg); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	a.lastCP[lt.log] = c
	return nil
}

// leaseLost reports whether the current log's lease was taken by another
// appender.
func (a *Appender) leaseLost() bool {
	return a.lostLog(a.w.id)
}

// lostLog reports whether the lease of log was taken by another appender.
func (a *Appender) lostLog(log string) bool {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	return a.lease.lost && a.lease.log == log
}

// absorb reads one batch of log into the frontier and closes rc. Records
// must continue the frontier in sequence; with atCheckpoint, the frontier
// must also match the checkpoint when it reaches its size. A read failure
// is returned as is; anything else that does not fit is errNotContinuable.
func (ld *loaded) absorb(rc io.ReadCloser, log string, r *Record, atCheckpoint bool) error {
	err := func() error {
		defer rc.Close()
		br, err := newBatchReader(rc)
		if err != nil {
			return err
		}
		for {
			raw, err := br.next(r)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if r.Log != log || r.Seq != ld.f.n {
				return errNotContinuable
			}
			ld.f.add(tlog.RecordHash(raw))
			if atCheckpoint && ld.f.n == ld.cp.tree.N && ld.f.root() != ld.cp.tree.Hash {
				return errNotContinuable
			}
		}
	}()
	if err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return ioe.err
		}
		return errNotContinuable
	}
	return nil
}
