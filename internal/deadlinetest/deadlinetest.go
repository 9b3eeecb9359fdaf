// Package deadlinetest checks that every public call of a vault.Vault
// returns by its context's deadline plus vault.DeadlineMargin, with an error
// that says what failed, while one of its dependencies (the store, the KEK)
// fails in the middle of the call: a server SIGSTOPped or SIGKILLed, or, in
// process, one that hangs or refuses every call.
//
// Run calls each public call of the vault (Put, Grant, Redeem, Decide,
// Delete, Hold, Release, EraseSubject, Sweep, Rewrap, RotateTokenKey,
// Unfreeze, SyncAudit, ListSubject, KEKCounts, Close) on a fresh vault and
// store, with a Deadline context, once per strike point: the fault strikes
// when the call makes its k-th dependency call (a store call made with the
// call's context or an audit batch write during the call; a KEK call made
// with the call's context), for the points the Fault's Points picks from a
// dry run of the same call. It is a test helper of vault/faulttest and of
// the KMS fault suite; it uses the public API only.
package deadlinetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Deadline is the deadline every call gets.
const Deadline = 2 * time.Second

// GiveUp is how long after its deadline a call that has not returned is
// reported as hung (and left running).
const GiveUp = 20 * time.Second

var errNoReturn = errors.New("deadlinetest: the call did not return")

// Target is the dependency a Fault strikes.
type Target int

// Targets.
const (
	Store Target = iota // the store (also the audit log's)
	KEK                 // the key-encryption key (Env.KEK)
)

// Fault is one way for a dependency to fail.
type Fault struct {
	Name   string
	Target Target
	// Strike makes the dependency fail from now on (SIGSTOP, SIGKILL of
	// its server; or, in process, g.Hang or g.Refuse: g stands between the
	// run's vault and its dependency). It runs inside the call's
	// dependency call, which then goes on to the failed dependency.
	Strike func(g *Gate)
	// Heal makes the dependency work again and returns once it answers.
	Heal func(t testing.TB, g *Gate)
	// Want: a call the fault struck returns nil or an error matching one
	// of these (errors.Is), never an untyped one.
	Want []error
	// Reason, if set, is the audit reason every Grant and Redeem refusal
	// the fault caused must be recorded with (checked after Heal).
	Reason string
	// Points picks the strike points (1-based indexes into trace, the
	// dependency calls of a healthy run of the call: "put audit/...",
	// "get keys/...", "kek decrypt"); nil: EachKind.
	Points func(trace []string) []int
	// Parallel runs the strike points of a call eight at a time (in-process
	// faults, each run with its own store and gate).
	Parallel bool
}

// EachKind strikes at the first dependency call of each kind (the same
// operation on keys that differ only in IDs, numbers and times is one
// kind: a grant's two dozen limiter counts are a few kinds) and at every
// audit batch write (the first, and the receipts and records that follow
// a change).
func EachKind(trace []string) []int {
	seen := map[string]bool{}
	var out []int
	for i, op := range trace {
		if strings.HasPrefix(op, "put ") && batchKey.MatchString(strings.TrimPrefix(op, "put ")) {
			out = append(out, i+1)
			continue
		}
		kind := idLike.ReplaceAllString(op, "*")
		if !seen[kind] {
			seen[kind] = true
			out = append(out, i+1)
		}
	}
	return out
}

// idLike: the parts of a key that differ between objects of one kind.
var idLike = regexp.MustCompile(`[0-9a-f]{16,}|[0-9]+`)

// Every strikes at each dependency call in turn.
func Every(trace []string) []int {
	out := make([]int, len(trace))
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// AuditWrites strikes at the call's first dependency call, at each audit
// batch write made for it, and at the call right after its first audit
// write (where a call has changed something and has more to do).
func AuditWrites(trace []string) []int {
	seen := map[int]bool{1: true}
	out := []int{1}
	add := func(k int) {
		if k <= len(trace) && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	first := true
	for i, op := range trace {
		if strings.HasPrefix(op, "put ") && batchKey.MatchString(strings.TrimPrefix(op, "put ")) {
			add(i + 1)
			if first {
				add(i + 2)
				first = false
			}
		}
	}
	sort.Ints(out)
	return out
}

// Env is the backend a Fault is injected into.
type Env struct {
	// Store returns a fresh store for one run (a new bucket, a new
	// directory).
	Store func(t testing.TB) store.Store
	// ClockOf, if set, returns the clock a store made by Store tells its
	// time by (store.Clock), or nil: the vault is opened on it, so that
	// moving the vault's clock moves the store's (the vault refuses to
	// sweep, shred or spend while the two disagree).
	ClockOf func(store.Store) Clock
	// KEK is the vault's KEK; OtherKEK a second one (Rewrap moves the
	// vault from KEK to OtherKEK).
	KEK, OtherKEK kms.KEK
}

// FSEnv is an Env on filesystem stores (a new directory for each run),
// each telling its time by a manual clock of its own.
func FSEnv(kek, other kms.KEK) Env {
	var clocks sync.Map // store.Store → *memstore.Clock
	return Env{
		Store: func(t testing.TB) store.Store {
			st, c := testenv.FS(t)
			clocks.Store(st, c)
			return st
		},
		ClockOf: func(st store.Store) Clock {
			if c, ok := clocks.Load(st); ok {
				return c.(*memstore.Clock)
			}
			return nil
		},
		KEK:      kek,
		OtherKEK: other,
	}
}

// ProcessFault is a Fault of a server process: strike stops or kills it
// (a strike that fails panics), heal resumes or restarts it (a heal that
// fails fails the test). The caller sets the rest of the Fault.
func ProcessFault(name string, strike, heal func() error) Fault {
	return Fault{
		Name: name,
		Strike: func(*Gate) {
			if err := strike(); err != nil {
				panic(err)
			}
		},
		Heal: func(t testing.TB, _ *Gate) {
			if err := heal(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// Gate is an in-process fault of a run's dependency (its store or its
// KEK): Hang makes every call block until its context ends, Refuse makes
// every call fail at once, as calls to a SIGSTOPped and a SIGKILLed server
// do. Heal lets calls through again.
type Gate struct {
	mu   sync.Mutex
	mode int // 0 open, 1 hang, 2 refuse
	open chan struct{}
}

// ErrRefused is the error of a store call through a Gate that refuses.
var ErrRefused = errors.New("deadlinetest: connection refused")

func (g *Gate) set(mode int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode == 1 && mode != 1 {
		close(g.open)
	}
	if mode == 1 && g.mode != 1 {
		g.open = make(chan struct{})
	}
	g.mode = mode
}

// Hang makes every call block until its context ends.
func (g *Gate) Hang() { g.set(1) }

// Refuse makes every call fail with ErrRefused.
func (g *Gate) Refuse() { g.set(2) }

// Heal lets calls through again.
func (g *Gate) Heal() { g.set(0) }

func (g *Gate) pass(ctx context.Context) error {
	g.mu.Lock()
	mode, open := g.mode, g.open
	g.mu.Unlock()
	switch mode {
	case 1:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-open:
		}
	case 2:
		return ErrRefused
	}
	return nil
}

func gateStore(st store.Store, g *Gate) store.Store {
	gs := &gated{st, g}
	return withOptional(st, gs, func(ctx context.Context, key string, expirable bool) error {
		if err := g.pass(ctx); err != nil {
			return err
		}
		return st.(store.ExpiryTagger).SetExpirable(ctx, key, expirable)
	}, func(ctx context.Context) (time.Time, error) {
		if err := g.pass(ctx); err != nil {
			return time.Time{}, err
		}
		return st.(store.Clock).Time(ctx)
	})
}

// withOptional returns w, a wrapper of inner, with the optional interfaces
// of the store contract (store.ExpiryTagger, store.Clock) exactly when
// inner has them, implemented by tag and clock.
func withOptional(inner, w store.Store, tag func(context.Context, string, bool) error, clock func(context.Context) (time.Time, error)) store.Store {
	_, isTagger := inner.(store.ExpiryTagger)
	_, isClock := inner.(store.Clock)
	switch {
	case isTagger && isClock:
		return taggerClock{w, tag, clock}
	case isTagger:
		return tagger{w, tag}
	case isClock:
		return clocked{w, clock}
	}
	return w
}

type tagger struct {
	store.Store
	tag func(context.Context, string, bool) error
}

func (s tagger) SetExpirable(ctx context.Context, key string, expirable bool) error {
	return s.tag(ctx, key, expirable)
}

type clocked struct {
	store.Store
	clock func(context.Context) (time.Time, error)
}

func (s clocked) Time(ctx context.Context) (time.Time, error) { return s.clock(ctx) }

type taggerClock struct {
	store.Store
	tag   func(context.Context, string, bool) error
	clock func(context.Context) (time.Time, error)
}

func (s taggerClock) SetExpirable(ctx context.Context, key string, expirable bool) error {
	return s.tag(ctx, key, expirable)
}

func (s taggerClock) Time(ctx context.Context) (time.Time, error) { return s.clock(ctx) }

type gatedKEK struct {
	kms.KEK
	g *Gate
}

func (k gatedKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if err := k.g.pass(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
	}
	return k.KEK.Encrypt(ctx, pt, ad)
}

func (k gatedKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if err := k.g.pass(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
	}
	return k.KEK.Decrypt(ctx, ct, ad)
}

type gated struct {
	store.Store
	g *Gate
}

func (s *gated) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if err := s.g.pass(ctx); err != nil {
		return err
	}
	return s.Store.Put(ctx, key, body, size, opts)
}

func (s *gated) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.g.pass(ctx); err != nil {
		return nil, err
	}
	return s.Store.Get(ctx, key)
}

func (s *gated) Delete(ctx context.Context, key string) error {
	if err := s.g.pass(ctx); err != nil {
		return err
	}
	return s.Store.Delete(ctx, key)
}

func (s *gated) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := s.g.pass(ctx); err != nil {
			yield("", err)
			return
		}
		for k, err := range s.Store.List(ctx, prefix) {
			if !yield(k, err) {
				return
			}
		}
	}
}

// callKey marks the context of the call under test, so that its own
// dependency calls are counted and others' (the vault's background work)
// are not.
type callKey struct{}

// batchKey matches an audit batch write (audit/<log>/<20 digits>): the
// appender makes it with its own context on behalf of the call.
var batchKey = regexp.MustCompile(`^audit/[^_/][^/]*/[0-9]{20}$`)

// counter counts the dependency calls of the call under test and strikes
// at the k-th.
type counter struct {
	mu     sync.Mutex
	armed  bool
	n, k   int
	strike func()
	struck bool
	trace  []string
	last   map[string]time.Time // per call (its context's callKey): its latest dependency call
}

func (c *counter) arm(k int, strike func()) {
	c.mu.Lock()
	c.armed, c.n, c.k, c.strike, c.struck, c.trace = true, 0, k, strike, false, nil
	c.last = map[string]time.Time{}
	c.mu.Unlock()
}

// lastCall is when the call named name last called its dependency.
func (c *counter) lastCall(name string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[name]
}

func (c *counter) disarm() (struck bool, trace []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	return c.struck, c.trace
}

func (c *counter) op(ctx context.Context, what, key string) {
	name, _ := ctx.Value(callKey{}).(string)
	ours := name != "" || (what == "put" && batchKey.MatchString(key))
	c.mu.Lock()
	if !c.armed || !ours {
		c.mu.Unlock()
		return
	}
	if name != "" {
		c.last[name] = time.Now()
	}
	c.n++
	c.trace = append(c.trace, what+" "+key)
	strike := c.n == c.k && !c.struck
	if strike {
		c.struck = true
	}
	f := c.strike
	c.mu.Unlock()
	if strike {
		f()
	}
}

type countedStore struct {
	store.Store
	c *counter
}

func (s *countedStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	s.c.op(ctx, "put", key)
	return s.Store.Put(ctx, key, body, size, opts)
}

func (s *countedStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.c.op(ctx, "get", key)
	return s.Store.Get(ctx, key)
}

func (s *countedStore) Delete(ctx context.Context, key string) error {
	s.c.op(ctx, "delete", key)
	return s.Store.Delete(ctx, key)
}

func (s *countedStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	s.c.op(ctx, "list", prefix)
	return s.Store.List(ctx, prefix)
}

func countStore(st store.Store, c *counter) store.Store {
	return withOptional(st, &countedStore{st, c}, func(ctx context.Context, key string, expirable bool) error {
		c.op(ctx, "tag", key)
		return st.(store.ExpiryTagger).SetExpirable(ctx, key, expirable)
	}, func(ctx context.Context) (time.Time, error) {
		c.op(ctx, "clock", "")
		return st.(store.Clock).Time(ctx)
	})
}

type countedKEK struct {
	kms.KEK
	c *counter
}

func (k *countedKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	k.c.op(ctx, "kek", "encrypt")
	return k.KEK.Encrypt(ctx, pt, ad)
}

func (k *countedKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	k.c.op(ctx, "kek", "decrypt")
	return k.KEK.Decrypt(ctx, ct, ad)
}

// clock is the vault's injected clock.
// Clock is an injected clock: the vault's and, through Env.ClockOf, the
// store's.
type Clock interface {
	Now() time.Time
	Advance(time.Duration)
}

// fixture is one run's vault and what its call needs, made healthy.
type fixture struct {
	v     *vault.Vault
	st    store.Store // the raw store
	clk   Clock
	env   Env
	docs  map[string]vault.Info
	token string
}

var by = vault.Actor{Principal: "operator-1", Reason: "deadline test"}

func scan(n int) []byte { return testenv.JPEG(n, "") }

func (f *fixture) put(t testing.TB, name, subject string, retention time.Duration) vault.Info {
	t.Helper()
	b := scan(20 << 10)
	info, err := f.v.Put(context.Background(), vault.Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: subject, Retention: retention})
	if err != nil {
		t.Fatalf("setup: put %s: %v", name, err)
	}
	f.docs[name] = info
	return info
}

// grant puts "doc" for member-1 and grants it to reviewer-1.
func (f *fixture) grant(t testing.TB) vault.Grant {
	t.Helper()
	info := f.put(t, "doc", "member-1", 0)
	g, err := f.v.Grant(context.Background(), info.ID, vault.Access{Principal: "reviewer-1", Purpose: "age-check"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// view grants "doc" to reviewer-1, who opens it and reads it through (its
// release is then folded into the log in the background).
func (f *fixture) view(t testing.TB) {
	t.Helper()
	g := f.grant(t)
	rc, _, err := f.v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-1"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
}

// call is one public call of the vault.
type call struct {
	name  string
	setup func(t testing.TB, f *fixture)
	do    func(ctx context.Context, f *fixture) error
	// absorbs: the call may return nil though the fault struck it at op
	// (it reports the fault otherwise, or needs nothing more from the
	// dependency after op).
	absorbs func(ft Fault, op string) bool
}

func never(Fault, string) bool { return false }

var calls = []call{
	{name: "Put", absorbs: never, do: func(ctx context.Context, f *fixture) error {
		b := scan(300 << 10)
		_, err := f.v.Put(ctx, vault.Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: "member-1"})
		return err
	}},
	{name: "Grant", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Grant(ctx, f.docs["doc"].ID, vault.Access{Principal: "reviewer-1", Purpose: "age-check"})
			return err
		}},
	{name: "Redeem", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.token = f.grant(t).Token },
		do: func(ctx context.Context, f *fixture) error {
			rc, _, err := f.v.Redeem(ctx, f.token, vault.Requester{Principal: "reviewer-1"})
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}},
	{name: "Decide", absorbs: never,
		// Decide is accepted only from a principal that viewed the
		// document: reviewer-1 opens it first.
		setup: func(t testing.TB, f *fixture) { f.view(t) },
		do: func(ctx context.Context, f *fixture) error {
			return f.v.Decide(ctx, f.docs["doc"].ID, vault.Decision{Verdict: vault.Approved}, vault.Actor{Principal: "reviewer-1"})
		}},
	{name: "Delete", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do:    func(ctx context.Context, f *fixture) error { return f.v.Admin().Delete(ctx, f.docs["doc"].ID, by) }},
	{name: "Hold", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do:    func(ctx context.Context, f *fixture) error { return f.v.Admin().Hold(ctx, f.docs["doc"].ID, by) }},
	{name: "Release", absorbs: never,
		setup: func(t testing.TB, f *fixture) {
			info := f.put(t, "doc", "member-1", 0)
			if err := f.v.Admin().Hold(context.Background(), info.ID, by); err != nil {
				t.Fatal(err)
			}
		},
		do: func(ctx context.Context, f *fixture) error { return f.v.Admin().Release(ctx, f.docs["doc"].ID, by) }},
	{name: "EraseSubject", absorbs: never,
		setup: func(t testing.TB, f *fixture) {
			f.put(t, "a", "member-erased", 0)
			f.put(t, "b", "member-erased", 0)
		},
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Admin().EraseSubject(ctx, "member-erased", by)
			return err
		}},
	{name: "Sweep",
		// A KEK outage is reported in SweepReport.Unknown: nothing is
		// destroyed, and the sweep goes on.
		absorbs: func(ft Fault, _ string) bool { return ft.Target == KEK },
		setup: func(t testing.TB, f *fixture) {
			f.put(t, "a", "member-1", time.Hour)
			f.put(t, "b", "member-2", time.Hour)
			f.clk.Advance(2 * time.Hour)
		},
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Admin().Sweep(ctx, by)
			return err
		}},
	{name: "Rewrap", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Admin().Rewrap(ctx, f.env.KEK, f.env.OtherKEK, by, vault.RewrapOptions{})
			return err
		}},
	{name: "RotateTokenKey", absorbs: never, do: func(ctx context.Context, f *fixture) error {
		return f.v.Admin().RotateTokenKey(ctx, by, vault.RotateOptions{})
	}},
	{name: "Unfreeze", absorbs: never, do: func(ctx context.Context, f *fixture) error {
		return f.v.Admin().Unfreeze(ctx, "reviewer-9", by)
	}},
	{name: "SyncAudit",
		// A KEK outage does not keep releases out of the log.
		absorbs: func(ft Fault, _ string) bool { return ft.Target == KEK },
		setup:   func(t testing.TB, f *fixture) { f.view(t) }, // its release is being folded now
		do:      func(ctx context.Context, f *fixture) error { return f.v.Admin().SyncAudit(ctx) }},
	{name: "ListSubject", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Admin().ListSubject(ctx, "member-1", by)
			return err
		}},
	{name: "KEKCounts", absorbs: never,
		setup: func(t testing.TB, f *fixture) { f.put(t, "doc", "member-1", 0) },
		do: func(ctx context.Context, f *fixture) error {
			_, err := f.v.Admin().KEKCounts(ctx)
			return err
		}},
	{name: "Close",
		// Once the final checkpoint is written, the lease is given back
		// for the next instance: if that fails, the next one waits for
		// the lease to expire, and nothing is lost.
		absorbs: func(_ Fault, op string) bool { return strings.Contains(op, " audit/_lease/") },
		do:      func(ctx context.Context, f *fixture) error { return f.v.Close(ctx) }},
}

// Calls names the calls Run checks, in order.
func Calls() []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.name)
	}
	return out
}

// Run checks every call under ft, in subtests named after the calls.
func Run(t *testing.T, env Env, ft Fault) { RunCalls(t, env, ft, Calls()...) }

// RunCalls checks the calls named (see Calls) under ft, in that order.
func RunCalls(t *testing.T, env Env, ft Fault, names ...string) {
	for _, name := range names {
		for _, c := range calls {
			if c.name == name {
				t.Run(c.name, func(t *testing.T) { runCall(t, env, ft, c) })
			}
		}
	}
}

// result of one run.
type result struct {
	k       int
	struck  bool
	elapsed time.Duration // from the call to its return
	late    time.Duration // from its deadline, as the process saw it, to its return
	err     error
	trace   []string
}

func runCall(t *testing.T, env Env, ft Fault, c call) {
	dry := runOnce(t, env, ft, c, 0)
	if dry.err != nil {
		t.Fatalf("%s with every dependency healthy: %v", c.name, dry.err)
	}
	pick := ft.Points
	if pick == nil {
		pick = EachKind
	}
	points := pick(dry.trace)
	if len(points) == 0 {
		points = []int{1}
	}
	t.Logf("%s: %d dependency calls healthy (%s); striking at %v", c.name, len(dry.trace), dry.elapsed.Round(time.Millisecond), points)
	results := make([]result, len(points))
	if ft.Parallel {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, k := range points {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				results[i] = runOnce(t, env, ft, c, k)
			})
		}
		wg.Wait()
	} else {
		for i, k := range points {
			results[i] = runOnce(t, env, ft, c, k)
		}
	}
	slowest, latest := time.Duration(0), time.Duration(0)
	for _, r := range results {
		slowest, latest = max(slowest, r.elapsed), max(latest, r.late)
		at, op := "never struck", ""
		if r.struck && r.k <= len(r.trace) {
			op = r.trace[r.k-1]
			at = fmt.Sprintf("struck at %d (%s)", r.k, op)
		}
		if testing.Verbose() {
			t.Logf("%s, %s: %v after the call, %v past its deadline: %v", c.name, at, r.elapsed.Round(time.Millisecond), r.late.Round(time.Millisecond), r.err)
		}
		if r.late > vault.DeadlineMargin {
			t.Errorf("%s, %s: returned %v after its deadline (%v after the call), more than DeadlineMargin (err: %v)", c.name, at, r.late.Round(time.Millisecond), r.elapsed.Round(time.Millisecond), r.err)
		}
		switch {
		case !r.struck && r.err != nil:
			t.Errorf("%s, %s: %v; want success (the fault never struck)", c.name, at, r.err)
		case r.struck && r.err == nil && !c.absorbs(ft, op):
			t.Errorf("%s, %s: succeeded though its dependency failed", c.name, at)
		case r.err != nil && !matchesAny(r.err, ft.Want):
			t.Errorf("%s, %s: %v; want an error matching one of %v", c.name, at, r.err, ft.Want)
		}
	}
	t.Logf("%s: slowest return %v after its call, latest %v after its deadline (%v)", c.name, slowest.Round(time.Millisecond), latest.Round(time.Millisecond), Deadline)
}

func matchesAny(err error, want []error) bool {
	for _, w := range want {
		if errors.Is(err, w) {
			return true
		}
	}
	return false
}

// runOnce runs c on a fresh vault, striking at the k-th dependency call (0:
// never). A run in which the fault never struck, yet the call ran out of
// time, did not get to the strike point before its deadline on a loaded
// machine: it is run again, up to three times.
func runOnce(t *testing.T, env Env, ft Fault, c call, k int) result {
	t.Helper()
	var r result
	for range 3 {
		if r = runOnceTry(t, env, ft, c, k); r.struck || !errors.Is(r.err, context.DeadlineExceeded) {
			break
		}
		t.Logf("%s, strike point %d: ran out of time before the strike (%v): again", c.name, k, r.err)
	}
	return r
}

func runOnceTry(t *testing.T, env Env, ft Fault, c call, k int) result {
	t.Helper()
	cnt := &counter{}
	g := &Gate{}
	f := prepare(t, env, ft, c, cnt, g)
	cnt.arm(k, func() { ft.Strike(g) })
	elapsed, late, _, err := invoke(f, c)
	struck, trace := cnt.disarm()
	if struck {
		ft.Heal(t, g)
	}
	f.finish(t, ft, c, struck)
	return result{k: k, struck: struck, elapsed: elapsed, late: late, err: err, trace: trace}
}

// prepare opens a vault for c on a fresh store, its dependency calls
// counted by cnt and passed through g, and makes c's fixture.
func prepare(t *testing.T, env Env, ft Fault, c call, cnt *counter, g *Gate) *fixture {
	t.Helper()
	raw := env.Store(t)
	st := raw
	kek, other := env.KEK, env.OtherKEK
	if ft.Target == KEK {
		kek = &countedKEK{gatedKEK{env.KEK, g}, cnt}
	} else {
		st = countStore(gateStore(raw, g), cnt)
	}
	var clk Clock
	if env.ClockOf != nil {
		clk = env.ClockOf(raw)
	}
	if clk == nil {
		clk = memstore.NewClock()
	}
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek, Now: clk.Now, Storage: vault.StorageConfig{DecryptKEKs: []kms.KEK{other}}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	f := &fixture{v: v, st: raw, clk: clk, env: Env{Store: env.Store, ClockOf: env.ClockOf, KEK: kek, OtherKEK: other}, docs: map[string]vault.Info{}}
	if c.setup != nil {
		c.setup(t, f)
	}
	if c.name != "SyncAudit" {
		// Nothing of the setup is left for the background to write.
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := v.Admin().SyncAudit(sctx); err != nil {
			t.Fatalf("setup: %v", err)
		}
		cancel()
	}
	return f
}

// invoke runs c with a Deadline context. late is how long after the
// deadline, as this process saw it pass, the call returned: on a loaded
// machine a goroutine woken by the deadline runs late, and no call can
// return before that; the margin is measured from there.
func invoke(f *fixture, c call) (elapsed, late time.Duration, end time.Time, err error) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), callKey{}, c.name), Deadline)
	defer cancel()
	seen := make(chan time.Time, 1)
	go func() { <-ctx.Done(); seen <- time.Now() }()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.do(ctx, f) }()
	select {
	case err = <-done:
	case <-time.After(Deadline + GiveUp):
		// Still running (it may return once the fault heals).
		err = fmt.Errorf("%w after %v", errNoReturn, Deadline+GiveUp)
	}
	end = time.Now()
	if dl, _ := ctx.Deadline(); end.After(dl) {
		late = end.Sub(<-seen)
	}
	return end.Sub(start), late, end, err
}

// finish closes the run's vault once its dependency is healed (Close
// waits for the records still on their way) and checks the refusal
// record of a struck Grant or Redeem.
func (f *fixture) finish(t *testing.T, ft Fault, c call, struck bool) {
	t.Helper()
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	f.v.Close(cctx)
	ccancel()
	if struck && ft.Reason != "" && (c.name == "Grant" || c.name == "Redeem") {
		checkRefusalRecorded(t, f, c.name, ft.Reason)
	}
}

// RunTogether runs every call at once, each on its own vault and store,
// and strikes once for all of them: before any call starts (at 0), or at
// the at-th dependency call counted over all of them. It costs one strike
// and one heal for
// all the calls (a SIGKILLed server's restart), where Run costs one per
// call and strike point. A call that returned before the strike must have
// succeeded; every other one must return by its deadline plus
// DeadlineMargin with nil or a Want error, and, after a strike before the
// calls, nil only where the call absorbs the fault or made no dependency
// call of its own after it.
func RunTogether(t *testing.T, env Env, ft Fault, at int) {
	t.Helper()
	cnt := &counter{}
	g := &Gate{}
	fs := make([]*fixture, len(calls))
	for i, c := range calls {
		fs[i] = prepare(t, env, ft, c, cnt, g)
	}
	var struckAt atomic.Pointer[time.Time]
	hit := func() {
		now := time.Now()
		struckAt.Store(&now)
		ft.Strike(g)
	}
	if at == 0 {
		hit()
		cnt.arm(0, nil)
	} else {
		cnt.arm(at, hit)
	}
	type out struct {
		err  error
		late time.Duration
		end  time.Time
	}
	outs := make([]out, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			_, late, end, err := invoke(fs[i], c)
			outs[i] = out{err, late, end}
		})
	}
	wg.Wait()
	cnt.disarm()
	sa := struckAt.Load()
	if sa != nil {
		ft.Heal(t, g)
	}
	for i, c := range calls {
		o := outs[i]
		struck := sa != nil && o.end.After(*sa)
		// A call that made no dependency call of its own after the strike
		// may have needed none (SyncAudit with its releases folded
		// already, Close with its checkpoint written).
		needed := sa != nil && cnt.lastCall(c.name).After(*sa)
		fs[i].finish(t, ft, c, struck && at == 0)
		if testing.Verbose() {
			t.Logf("%s: struck %v, %v past its deadline: %v", c.name, struck, o.late.Round(time.Millisecond), o.err)
		}
		switch {
		case o.late > vault.DeadlineMargin:
			t.Errorf("%s: returned %v after its deadline, more than DeadlineMargin (err: %v)", c.name, o.late.Round(time.Millisecond), o.err)
		case !struck && o.err != nil:
			t.Errorf("%s, before any fault: %v; want success", c.name, o.err)
		case struck && needed && o.err == nil && at == 0 && !c.absorbs(ft, ""):
			t.Errorf("%s: succeeded though its dependency was down from the start", c.name)
		case o.err != nil && !matchesAny(o.err, ft.Want):
			t.Errorf("%s: %v; want an error matching one of %v", c.name, o.err, ft.Want)
		}
	}
}

// checkRefusalRecorded: the refusal of the struck Grant or Redeem is in
// the audit log with reason.
func checkRefusalRecorded(t *testing.T, f *fixture, name, reason string) {
	t.Helper()
	ev := audit.EventGrant
	if name == "Redeem" {
		ev = audit.EventRedeem
	}
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for r, err := range audit.Scan(ctx, f.st, audit.Filter{Event: ev, Outcome: audit.OutcomeRefused}) {
		if err != nil {
			t.Errorf("reading the audit log: %v", err)
			return
		}
		got = append(got, r.Reason)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != reason {
		t.Errorf("%s refused by the fault: refusal records with reasons %q, want one with %q", name, got, reason)
	}
}
