package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/store"
)

// Defaults of AppenderOptions.
const (
	DefaultCheckpointEvery   = time.Second
	DefaultCheckpointRecords = 1000
	DefaultMaxBatch          = 512
)

// AppenderOptions tune an Appender. The zero value is ready to use.
type AppenderOptions struct {
	// LogID names the log this appender writes (1 to MaxLogLen bytes of
	// [A-Za-z0-9._-]). Default: an idle log of the store that the appender
	// can lease (see NewAppender), else a new log named by 128 random bits
	// in hex. Each writer (vault instance) must write its own log:
	// NewAppender refuses a LogID that already has objects in the store,
	// with ErrLogExists.
	LogID string

	// NewLog makes the appender start a new log even when an idle one could
	// be continued. Default false: the number of logs in a store grows with
	// the number of concurrent writers, not with restarts.
	NewLog bool

	// LeaseTTL is how long a writer's claim on its log lasts without
	// renewal (renewed every third of it). A log whose writer crashed can
	// be continued by another appender once it has passed. Default
	// DefaultLeaseTTL.
	LeaseTTL time.Duration

	// RetainFor makes every batch and checkpoint write-once until now +
	// RetainFor (store.PutOptions.RetainUntil; object lock on S3). Zero
	// means no retention. When the store answers
	// store.ErrRetentionUnsupported the appender retries without
	// retention, and WriteOnce reports false from then on.
	RetainFor time.Duration

	// CheckpointEvery is the longest time between signed checkpoints while
	// records arrive. Default DefaultCheckpointEvery.
	CheckpointEvery time.Duration

	// CheckpointRecords triggers a checkpoint once that many records were
	// appended since the last one. Default DefaultCheckpointRecords.
	CheckpointRecords int

	// MaxBatch is the most Append calls that share one batch object (one
	// store write). Default DefaultMaxBatch; at most 9999.
	MaxBatch int

	// WriteTimeout bounds each store call the appender makes: a batch
	// write waits at most this long, or until the latest deadline among
	// the batch's callers if that comes first (and stops once every caller
	// has gone); checkpoint and lease writes wait at most this long. A
	// store that does not answer in time fails the batch like any write
	// error (the log is left, see Appender), so one hung call never blocks
	// the log. A call the store does not end when its context does (a
	// hung mount) is left to finish in the background; while four of
	// those are outstanding, calls fail at once instead of piling up more.
	// Default DefaultWriteTimeout.
	WriteTimeout time.Duration

	// OnBatch, if set, is called after each batch write that succeeded,
	// before its Append calls return, with the log, the position of the
	// batch's first record, how many records it holds, and the records as
	// written, in order (a "continues" record that opens a log included).
	// It runs on the writer's
	// goroutine: it must be quick and must not call Append. A batch whose
	// write failed, even one that landed after all, is never passed.
	OnBatch func(log string, first, n int64, recs []Record)

	// Now is the clock for record and checkpoint times and retention, and
	// for lease expiry when the store does not tell its own time
	// (store.Clock): leases are written and judged on the store's clock
	// when it has one. Default time.Now.
	Now func() time.Time
}

// Appender writes one audit log through a store.Store with group commit.
// It is safe for concurrent use by multiple goroutines.
//
// Concurrent Append calls are batched: one goroutine takes whatever is
// queued (up to MaxBatch), gives the records contiguous sequence numbers,
// writes them as one create-only batch object and then releases every
// waiter. Append returns only once that write returned nil.
//
// If a batch write fails, every waiter of that batch gets an error wrapping
// ErrUnavailable. The failure may be ambiguous (the object may exist after
// all), so the appender never writes those sequence numbers again: it
// leaves the log as it is (with a checkpoint of its last known-durable
// size, written when the store allows) and continues in a fresh log with a
// new random ID. The first record of the new log is an EventOpen record
// with Reason "continues" and Detail "log <old ID> size <n>", naming the
// log it replaces and how many records of it were durable; Verify checks
// that claim. A failed batch's records may therefore exist, past that size,
// in the abandoned log, where Verify reports them as an unsealed tail.
//
// Checkpoints are signed and written by a background goroutine, off the
// Append path, at least every CheckpointEvery or CheckpointRecords records,
// and at Close (marked final, unless another appender took the log over:
// see the lease protocol in lease.go). The appender keeps only the Merkle
// frontier of its log (O(log n) hashes).
type Appender struct {
	st       *boundedStore
	signer   note.Signer
	verifier note.Verifier
	holder   string // random ID of this appender in lease objects
	opts     AppenderOptions

	leaseMu sync.Mutex // guards lease; never held across a store call
	lease   leaseState
	renewMu sync.Mutex // serializes renewLease

	ctx    context.Context // store writes; cancelled when Close gives up
	cancel context.CancelFunc

	// Append registers as a sender under sendMu so that Close can wait for
	// every request to be queued or abandoned before the writer exits.
	sendMu      sync.RWMutex
	closed      bool
	senders     sync.WaitGroup
	sendersDone chan struct{}
	reqs        chan *request
	stop        chan struct{}
	abort       chan struct{}
	writerDone  chan struct{}

	cpKick chan struct{}
	cpStop chan struct{}
	cpDone chan struct{}
	cpMu   sync.Mutex            // serializes checkpoint writes; guards lastCP
	lastCP map[string]checkpoint // last checkpoint written per log

	mu          sync.Mutex // guards the fields below
	cur         logTree    // durable state of the current log
	curCP       int64      // size of the last checkpoint of the current log
	retired     []logTree  // abandoned logs still owed a checkpoint
	noRetention bool       // the store refused RetainUntil

	// Owned by the writer goroutine.
	w       logState
	buf     []byte        // batch encoding buffer
	lastPut time.Duration // how long the previous batch write took

	inflight atomic.Int64 // Append calls in progress

	closeOnce sync.Once
	closeErr  error
}

type logTree struct {
	log  string
	tree tlog.Tree
	f    frontier // the frontier of tree (read-only once shared)
}

type logState struct {
	id     string
	f      frontier
	cont   *logTree // the log this one replaces, announced by its first record
	ready  bool     // registered and leased (or continued)
	reopen bool     // a continued log that was closed: write a reopen checkpoint before the next batch
	probe  bool     // a failed write to this empty log may have landed
}

type request struct {
	ctx  context.Context
	rec  Record
	done chan result
}

type result struct {
	rec Record
	err error
}

// NewAppender returns an Appender that writes a log in st, signing
// checkpoints with signerKey (from GenerateKey). ctx bounds only the setup;
// the appender runs until Close, which the caller must call.
//
// Unless opts.LogID or opts.NewLog is set, it first tries to continue an
// idle log of the store: one whose writer closed it or stopped renewing its
// lease (AppenderOptions.LeaseTTL), and whose records agree with its latest
// checkpoint signed by this key. It rebuilds the log's Merkle frontier from
// that checkpoint and the records after it, seals a crashed writer's
// unsealed tail with a checkpoint at once, and before writing past a final
// checkpoint writes a signed reopen checkpoint, so that Verify can tell a
// continued log from one extended by someone without the key. Otherwise it
// starts a new log, registered (audit/_registry/<log>) with its first batch.
func NewAppender(ctx context.Context, st store.Store, signerKey string, opts AppenderOptions) (*Appender, error) {
	a, err := newAppender(ctx, st, signerKey, opts)
	if err != nil {
		return nil, err
	}
	if opts.LogID == "" && !opts.NewLog {
		if _, err := a.adopt(ctx); err != nil {
			a.cancel()
			return nil, fmt.Errorf("%w: looking for an idle log: %w", ErrUnavailable, err)
		}
	}
	go a.run()
	go a.checkpointLoop()
	return a, nil
}

// newAppender returns an appender whose goroutines are not started (tests
// drive commit and writeCheckpoints directly to lay out logs exactly).
func newAppender(ctx context.Context, st store.Store, signerKey string, opts AppenderOptions) (*Appender, error) {
	signer, err := parseSigner(signerKey)
	if err != nil {
		return nil, err
	}
	verifier, err := verifierOf(signerKey)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.RetainFor < 0, opts.CheckpointEvery < 0, opts.CheckpointRecords < 0, opts.MaxBatch < 0, opts.LeaseTTL < 0:
		return nil, errors.New("audit: negative appender option")
	case opts.MaxBatch >= windowSize:
		// A batch never spans a Follower's listing window.
		return nil, fmt.Errorf("audit: MaxBatch above %d", windowSize-1)
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointRecords == 0 {
		opts.CheckpointRecords = DefaultCheckpointRecords
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.LogID == "" {
		opts.LogID = randomLogID()
	} else {
		if !ValidLogID(opts.LogID) {
			return nil, errors.New("audit: LogID must be 1-64 bytes of [A-Za-z0-9._-], not starting with '.' or '_'")
		}
		// A random ID cannot collide; a chosen one can, and two writers of
		// one log would fork it.
		for _, err := range st.List(ctx, logPrefix(opts.LogID)) {
			if err != nil {
				return nil, fmt.Errorf("%w: checking log ID: %w", ErrUnavailable, err)
			}
			return nil, ErrLogExists
		}
		if _, err := st.Get(ctx, registryKey(opts.LogID)); err == nil {
			return nil, ErrLogExists
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: checking log ID: %w", ErrUnavailable, err)
		}
	}
	a := &Appender{
		st:          &boundedStore{Store: st},
		signer:      signer,
		verifier:    verifier,
		holder:      randomLogID(),
		opts:        opts,
		sendersDone: make(chan struct{}),
		reqs:        make(chan *request, 4*opts.MaxBatch),
		stop:        make(chan struct{}),
		abort:       make(chan struct{}),
		writerDone:  make(chan struct{}),
		cpKick:      make(chan struct{}, 1),
		cpStop:      make(chan struct{}),
		cpDone:      make(chan struct{}),
		lastCP:      make(map[string]checkpoint),
		w:           logState{id: opts.LogID},
		cur:         logTree{log: opts.LogID},
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// randomLogID returns 128 random bits in hex (crypto/rand.Read never
// fails; it aborts the program if the system's generator does).
func randomLogID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LogID returns the ID of the log being written now. It changes when the
// appender abandons a log after a failed write.
func (a *Appender) LogID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur.log
}

// WriteOnce reports whether objects are being written with retention
// (RetainFor > 0 and the store has not refused it).
func (a *Appender) WriteOnce() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.opts.RetainFor > 0 && !a.noRetention
}

// Format prints the log ID only, for every verb (%v, %+v, %#v, %s): the
// appender holds the signing key.
func (a *Appender) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "audit.Appender{log: %s}", a.LogID())
}

// String implements fmt.Stringer like Format.
func (a *Appender) String() string { return fmt.Sprintf("%v", a) }

// GoString implements fmt.GoStringer like Format.
func (a *Appender) GoString() string { return a.String() }

// Append writes r to the log and returns it with Log, Seq (and Time, when
// r.Time was zero) filled in, once it is durable. Caller-supplied Log and
// Seq are ignored. An invalid record is refused with ErrInvalidRecord
// before anything is written; every other error wraps ErrUnavailable and
// means the caller must not proceed as if the event was recorded.
//
// If ctx ends while the record waits for its batch, Append returns an error
// wrapping ErrUnavailable and ctx.Err(), but the record may still be
// written (it is dropped only if its batch had not yet been formed).
func (a *Appender) Append(ctx context.Context, r Record) (Record, error) {
	check := r
	check.Log, check.Seq = "x", 0
	if err := check.validate(); err != nil {
		return Record{}, err
	}
	req := &request{ctx: ctx, rec: r, done: make(chan result, 1)}
	a.inflight.Add(1)
	defer a.inflight.Add(-1)
	a.sendMu.RLock()
	if a.closed {
		a.sendMu.RUnlock()
		return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	a.senders.Add(1)
	a.sendMu.RUnlock()
	select {
	case a.reqs <- req:
		a.senders.Done()
	case <-ctx.Done():
		a.senders.Done()
		return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-a.abort:
		a.senders.Done()
		return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	select {
	case res := <-req.done:
		return res.rec, res.err
	case <-ctx.Done():
		return Record{}, fmt.Errorf("%w: waiting for the batch: %w", ErrUnavailable, ctx.Err())
	}
}

// run is the group-commit loop: the only goroutine that writes batches.
func (a *Appender) run() {
	defer close(a.writerDone)
	batch := make([]*request, 0, a.opts.MaxBatch)
	for {
		select {
		case r := <-a.reqs:
			a.commit(a.gather(append(batch[:0], r)))
		case <-a.stop:
			// Keep serving until every Append that passed the closed check
			// has queued or given up, then flush what is left.
			for {
				select {
				case r := <-a.reqs:
					a.commit(a.gather(append(batch[:0], r)))
				case <-a.sendersDone:
					for {
						b := a.gather(batch[:0])
						if len(b) == 0 {
							return
						}
						a.commit(b)
					}
				}
			}
		}
	}
}

// gather adds queued requests to batch, up to MaxBatch. When fewer are
// queued than there are Append calls in progress, it waits for them a
// little: callers just released by the previous batch are on their way
// back, and a batch sent without them makes every write carry a fraction
// of the load. The wait is at most a quarter of the last write's duration
// (and 1 ms), so a lone writer never waits and a fast store waits
// microseconds.
func (a *Appender) gather(batch []*request) []*request {
	for len(batch) < a.opts.MaxBatch {
		select {
		case r := <-a.reqs:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	want := func() int { return int(min(a.inflight.Load(), int64(a.opts.MaxBatch))) }
	if len(batch) == 0 || len(batch) >= want() || a.lastPut <= 0 {
		return batch
	}
	t := time.NewTimer(min(a.lastPut/4, time.Millisecond))
	defer t.Stop()
	for len(batch) < want() {
		select {
		case r := <-a.reqs:
			batch = append(batch, r)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// appendFramed appends r as a length-prefixed record and returns the
// record's bytes within b.
func appendFramed(b []byte, r *Record) ([]byte, []byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b, err := r.appendBinary(b)
	if err != nil {
		return b[:start], nil, err
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, b[start+4:], nil
}

// commit writes one batch and releases its waiters.
func (a *Appender) commit(batch []*request) {
	now := a.opts.Now()
	live := make([]*request, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			// Its caller has gone: it is not written.
			r.done <- result{err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	fail := func(err error) {
		for _, r := range live {
			r.done <- result{err: err}
		}
	}
	wctx, cancel := a.batchContext(live)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if a.leaseLost() {
			a.moveOn()
		}
		if err := a.prepare(wctx); err != nil {
			fail(fmt.Errorf("%w: starting a log: %w", ErrUnavailable, err))
			return
		}
		all, f, err := a.encode(live, now)
		recs := all[len(all)-len(live):] // after the "continues" record, if any
		if err != nil {
			// validated in Append, so this is a bug; fail closed.
			panic("audit: validated record does not encode: " + err.Error())
		}
		w := &a.w
		start := time.Now()
		err = a.put(wctx, batchKey(w.id, w.f.n), a.buf)
		a.lastPut = time.Since(start)
		if errors.Is(err, store.ErrExists) && w.probe && attempt < 3 {
			// Our own earlier write landed after reporting failure: read
			// the log and continue after it.
			ld, lerr := a.loadLog(wctx, w.id, frontier{})
			if lerr == nil {
				w.f, w.probe, w.cont = ld.f, false, nil
				a.mu.Lock()
				a.cur = logTree{log: w.id, tree: ld.f.tree(), f: ld.f}
				a.mu.Unlock()
				continue
			}
			w.probe = false
			a.moveOn()
			continue
		}
		if errors.Is(err, store.ErrExists) && attempt < 3 {
			// Another writer continued this log (a lease taken over by a
			// clock far ahead, or a writer that lost its lease without
			// noticing): our bytes are not there, so the records go to
			// another log, with nothing lost.
			a.moveOn()
			continue
		}
		if err != nil {
			fail(fmt.Errorf("%w: writing batch: %w", ErrUnavailable, err))
			a.abandon()
			return
		}
		if a.opts.OnBatch != nil {
			a.opts.OnBatch(w.id, w.f.n, f.n-w.f.n, all)
		}
		w.f, w.cont, w.probe = f, nil, false
		tree := f.tree()
		a.mu.Lock()
		a.cur = logTree{log: w.id, tree: tree, f: f}
		kick := tree.N-a.curCP >= int64(a.opts.CheckpointRecords)
		a.mu.Unlock()
		for i, r := range live {
			r.done <- result{rec: recs[i]}
		}
		if kick {
			select {
			case a.cpKick <- struct{}{}:
			default:
			}
		}
		return
	}
}

// encode lays out the batch of live requests at the end of the current log
// in a.buf, returning the records as written (a "continues" record first,
// when the batch opens a log, then one per request) and the frontier after
// them.
func (a *Appender) encode(live []*request, now time.Time) ([]Record, frontier, error) {
	w := &a.w
	f := w.f.clone()
	n := len(live)
	if w.cont != nil {
		n++
	}
	recs := make([]Record, 0, n)
	buf := appendBatchHeader(a.buf[:0], n)
	add := func(rec *Record) error {
		rec.Log, rec.Seq = w.id, f.n
		if rec.Time.IsZero() {
			rec.Time = now
		}
		rec.Time = rec.Time.Round(0).UTC()
		var raw []byte
		var err error
		if buf, raw, err = appendFramed(buf, rec); err != nil {
			return err
		}
		f.add(tlog.RecordHash(raw))
		return nil
	}
	if w.cont != nil {
		open := Record{Event: EventOpen, Outcome: OutcomeOK, Reason: "continues",
			Detail: "log " + w.cont.log + " size " + strconv.FormatInt(w.cont.tree.N, 10)}
		if err := add(&open); err != nil {
			return nil, f, err
		}
		recs = append(recs, open)
	}
	for _, r := range live {
		rec := r.rec
		if err := add(&rec); err != nil {
			return nil, f, err
		}
		recs = append(recs, rec)
	}
	a.buf = buf
	return recs, f, nil
}

// prepare makes the current log ready for its next batch: a new log gets
// its lease and registry entry, a continued closed log its reopen
// checkpoint.
func (a *Appender) prepare(ctx context.Context) error {
	w := &a.w
	if !w.ready {
		if err := a.takeLease(ctx, w.id); err != nil {
			return err
		}
		if err := a.register(ctx, w.id); err != nil && !errors.Is(err, ErrLogExists) {
			return err
		}
		w.ready = true
	}
	if w.reopen {
		a.cpMu.Lock()
		last := a.lastCP[w.id]
		t := a.opts.Now().Round(0).UTC()
		if t.Before(last.time) {
			t = last.time
		}
		c := checkpoint{log: w.id, tree: w.f.tree(), time: t, reopen: true}
		msg, err := signCheckpoint(c, a.signer)
		if err == nil {
			err = a.put(ctx, reopenKey(w.id, c.tree.N), msg)
			if errors.Is(err, store.ErrExists) {
				err = nil
			}
		}
		if err == nil {
			a.lastCP[w.id] = c
		}
		a.cpMu.Unlock()
		if err != nil {
			return err
		}
		w.reopen = false
	}
	return nil
}

// moveOn leaves the current log to the writer that took it and continues
// in a fresh one. Nothing was lost: the records of the current log up to
// w.f are durable, and the fresh log's first record says so.
func (a *Appender) moveOn() {
	w := &a.w
	next := logState{id: randomLogID(), cont: w.cont}
	a.mu.Lock()
	if w.f.n > 0 {
		lt := logTree{log: w.id, tree: w.f.tree(), f: w.f}
		next.cont = &lt
		if a.curCP < w.f.n {
			a.retired = append(a.retired, lt)
		}
	}
	a.cur, a.curCP = logTree{log: next.id}, 0
	a.mu.Unlock()
	a.w = next
}

// abandon switches to a fresh log after a failed batch write, whose
// sequence numbers must never be reused. A registered log with no durable
// record is kept: its next batch probes seq 0 again, and if the failed
// write landed after all (ErrExists), the appender reads the log and
// continues after it (see commit).
func (a *Appender) abandon() {
	w := &a.w
	if w.f.n == 0 && w.ready {
		w.probe = true
		return
	}
	id := randomLogID()
	next := logState{id: id, cont: w.cont}
	a.mu.Lock()
	if w.f.n > 0 {
		lt := logTree{log: w.id, tree: w.f.tree(), f: w.f}
		next.cont = &lt
		a.retired = append(a.retired, lt)
	}
	a.cur, a.curCP = logTree{log: id}, 0
	a.mu.Unlock()
	a.w = next
}

// DefaultWriteTimeout is the default AppenderOptions.WriteTimeout.
const DefaultWriteTimeout = 10 * time.Second

// batchContext is the context of one batch's store calls: it ends at
// WriteTimeout, at the latest deadline among the batch's callers if every
// one has a deadline and that comes first, and once every caller has gone
// (nobody waits for the write any more).
func (a *Appender) batchContext(live []*request) (context.Context, context.CancelFunc) {
	dl := time.Now().Add(a.opts.WriteTimeout)
	var latest time.Time
	all := true
	for _, r := range live {
		d, ok := r.ctx.Deadline()
		if !ok {
			all = false
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if all && latest.Before(dl) {
		dl = latest
	}
	ctx, cancel := context.WithDeadline(a.ctx, dl)
	var left atomic.Int64
	left.Store(int64(len(live)))
	stops := make([]func() bool, len(live))
	for i, r := range live {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// put writes a create-only object, with retention when configured.
func (a *Appender) put(ctx context.Context, key string, b []byte) error {
	opts := store.PutOptions{IfAbsent: true}
	a.mu.Lock()
	if a.opts.RetainFor > 0 && !a.noRetention {
		opts.RetainUntil = a.opts.Now().Add(a.opts.RetainFor)
	}
	a.mu.Unlock()
	err := a.st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts)
	if errors.Is(err, store.ErrRetentionUnsupported) && !opts.RetainUntil.IsZero() {
		a.mu.Lock()
		a.noRetention = true
		a.mu.Unlock()
		opts.RetainUntil = time.Time{}
		err = a.st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts)
	}
	return err
}

func (a *Appender) checkpointLoop() {
	defer close(a.cpDone)
	t := time.NewTicker(a.opts.CheckpointEvery)
	defer t.Stop()
	lt := time.NewTicker(a.opts.LeaseTTL / 3)
	defer lt.Stop()
	for {
		select {
		case <-lt.C:
			ctx, cancel := context.WithTimeout(a.ctx, a.opts.WriteTimeout)
			a.renewLease(ctx)
			cancel()
			continue
		case <-t.C:
		case <-a.cpKick:
			// A kick queued while the previous checkpoint was being written
			// may be stale.
			a.mu.Lock()
			due := a.cur.tree.N-a.curCP >= int64(a.opts.CheckpointRecords)
			a.mu.Unlock()
			if !due {
				continue
			}
		case <-a.cpStop:
			return
		}
		// A failure is retried at the next tick; appends do not depend on it.
		ctx, cancel := context.WithTimeout(a.ctx, a.opts.WriteTimeout)
		_ = a.writeCheckpoints(ctx, false)
		cancel()
	}
}

// Checkpoint writes a signed checkpoint of every durable record now, if any
// was appended since the last one. The background loop does this on its
// own; Checkpoint is for callers that want a checkpoint at a known point
// (before a backup, in tests). Its error wraps ErrUnavailable.
func (a *Appender) Checkpoint(ctx context.Context) error {
	a.sendMu.RLock()
	closed := a.closed
	a.sendMu.RUnlock()
	if closed {
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	return a.writeCheckpoints(ctx, false)
}

// writeCheckpoints writes a checkpoint of every retired log still owed one
// and of the current log; with final (at Close), the current log is closed
// (see closeLog) instead.
func (a *Appender) writeCheckpoints(ctx context.Context, final bool) error {
	a.cpMu.Lock()
	defer a.cpMu.Unlock()
	a.mu.Lock()
	retired := append([]logTree(nil), a.retired...)
	cur := a.cur
	a.mu.Unlock()
	var errs []error
	for _, lt := range retired {
		// Left after a failed or colliding write: another appender may be
		// writing it now.
		if err := a.sealLost(ctx, lt); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.lastCP, lt.log) // never written again
		a.mu.Lock()
		for i := range a.retired {
			if a.retired[i].log == lt.log {
				a.retired = append(a.retired[:i], a.retired[i+1:]...)
				break
			}
		}
		a.mu.Unlock()
	}
	switch {
	case final:
		if err := a.closeLog(ctx, cur); err != nil {
			errs = append(errs, err)
		}
	case cur.tree.N > 0:
		var err error
		if a.lostLog(cur.log) {
			err = a.sealLost(ctx, cur)
		} else {
			err = a.writeCheckpoint(ctx, cur, false)
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
		a.mu.Lock()
		if a.cur.log == cur.log {
			a.curCP = cur.tree.N
		}
		a.mu.Unlock()
		a.leaseMu.Lock()
		if a.lease.log == cur.log {
			a.lease.f = cur.f
		}
		a.leaseMu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: writing checkpoint: %w", ErrUnavailable, err)
	}
	return nil
}

// writeCheckpoint signs and stores one checkpoint; cpMu is held.
func (a *Appender) writeCheckpoint(ctx context.Context, lt logTree, final bool) error {
	last, ok := a.lastCP[lt.log]
	if ok && lt.tree.N <= last.tree.N && !final {
		return nil
	}
	// Checkpoint times never go backwards within a log, even if the clock
	// does, so that Verify can treat a decrease as a rollback.
	t := a.opts.Now().Round(0).UTC()
	if ok && t.Before(last.time) {
		t = last.time
	}
	c := checkpoint{log: lt.log, tree: lt.tree, time: t, final: final}
	msg, err := signCheckpoint(c, a.signer)
	if err != nil {
		return err
	}
	err = a.put(ctx, checkpointKey(lt.log, lt.tree.N, final), msg)
	if errors.Is(err, store.ErrExists) {
		// An earlier attempt that reported failure landed after all: a
		// checkpoint of the same tree (only this appender writes this log).
		err = nil
	}
	if err != nil {
		return err
	}
	a.lastCP[lt.log] = c
	return nil
}

// Close flushes queued records, stops the background checkpoints and
// writes a final signed checkpoint of the current log (unless it has no
// records). Append and Checkpoint fail with ErrClosed afterwards. If ctx
// ends first, queued writes are abandoned. Close is idempotent and returns
// the first call's result; its error wraps ErrUnavailable.
func (a *Appender) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { a.closeErr = a.close(ctx) })
	return a.closeErr
}

func (a *Appender) close(ctx context.Context) error {
	defer a.cancel()
	a.sendMu.Lock()
	a.closed = true
	a.sendMu.Unlock()
	go func() {
		a.senders.Wait()
		close(a.sendersDone)
	}()
	close(a.stop)
	select {
	case <-a.writerDone:
	case <-ctx.Done():
		a.cancel()
		close(a.abort)
		<-a.writerDone
	}
	close(a.cpStop)
	<-a.cpDone
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: close: %w", ErrUnavailable, err)
	}
	// The final checkpoint and the released lease: the log is idle now,
	// and the next appender may continue it.
	return a.writeCheckpoints(ctx, true)
}

// register writes the registry entry of a new log.
func (a *Appender) register(ctx context.Context, log string) error {
	text := registryHeader + "\n" + log + "\n" + a.opts.Now().Round(0).UTC().Format(time.RFC3339Nano) + "\n"
	msg, err := note.Sign(&note.Note{Text: text}, a.signer)
	if err != nil {
		return err
	}
	err = a.put(ctx, registryKey(log), msg)
	if errors.Is(err, store.ErrExists) {
		return ErrLogExists
	}
	return err
}
