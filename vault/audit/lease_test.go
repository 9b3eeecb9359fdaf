package audit

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// countLogs returns the IDs of the logs holding records.
func countLogs(t *testing.T, st *memstore.Store) map[string]bool {
	t.Helper()
	logs := map[string]bool{}
	for _, k := range st.Keys() {
		rest, ok := strings.CutPrefix(k, auditPrefix)
		if !ok || rest[0] == '_' {
			continue
		}
		logs[rest[:strings.IndexByte(rest, '/')]] = true
	}
	return logs
}

// TestBoundedLogs: 100 restarts (Open, a few records, Close) leave one
// log, not 100, and Verify passes after every one.
func TestBoundedLogs(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	st := newTestStore()
	c := newClock()
	total := 0
	for cycle := range 100 {
		a, err := NewAppender(ctx, st, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := a.Append(ctx, sampleRecord(cycle*3+i)); err != nil {
				t.Fatal(err)
			}
			total++
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if cycle%10 == 9 {
			rep := verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
			if len(rep.Logs) != 1 || rep.Logs[0].Records != int64(total) || !rep.Logs[0].Final || rep.Logs[0].Unsealed != 0 {
				t.Fatalf("cycle %d: report %+v", cycle, rep.Logs)
			}
		}
	}
	if n := len(countLogs(t, st)); n != 1 {
		t.Fatalf("100 restarts left %d logs", n)
	}
	// Leases do not pile up: the latest generation and nothing else.
	leases := 0
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, leasePrefix) {
			leases++
		}
	}
	if leases > 1 {
		t.Fatalf("%d lease objects left", leases)
	}
}

// TestContinueReadsOnlyTheTail: a continued log rebuilds its Merkle
// frontier from the lease's copy, checked against the last signed
// checkpoint, and reads only the batches after it.
func TestContinueReadsOnlyTheTail(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	gc := &getSpy{Store: newTestStore()}
	c := newClock()
	for cycle := range 5 {
		a, err := NewAppender(ctx, gc, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour, MaxBatch: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if _, err := a.Append(ctx, sampleRecord(cycle*50+i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	gc.resetGets()
	a, err := NewAppender(ctx, gc, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := gc.batchGets(); n != 0 {
		t.Fatalf("continuing a closed log of 250 batches read %d of them", n)
	}
	if a.cur.tree.N != 250 {
		t.Fatalf("continued at size %d", a.cur.tree.N)
	}
	a.Close(ctx)

	// A forged frontier in the lease is not believed: the appender reads
	// the whole log instead, and still continues it correctly.
	for _, k := range gc.Keys() {
		if strings.HasPrefix(k, leasePrefix) {
			b, _ := gc.Bytes(k)
			signer, err := note.NewSigner(skey)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := verifierOf(skey)
			l, err := openLease(b, note.VerifierList(v))
			if err != nil {
				t.Fatal(err)
			}
			// Signed with the key (a bug, not an attacker): still only
			// believed once it matches a signed checkpoint.
			l.f.hashes[0][0] ^= 1
			msg, _ := l.sign(signer)
			gc.SetBytes(k, msg)
		}
	}
	gc.resetGets()
	a, err = NewAppender(ctx, gc, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := gc.batchGets(); n != 250 || a.cur.tree.N != 250 {
		t.Fatalf("with a forged frontier: read %d batches, continued at %d", n, a.cur.tree.N)
	}
	if _, err := a.Append(ctx, sampleRecord(0)); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	verifyOK(t, gc.Store, vkey, VerifyOptions{Now: c.Now})
}

// TestConcurrentInstances: two live appenders never share a log; each
// keeps its own across restarts of the other.
func TestConcurrentInstances(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	st := newTestStore()
	c := newClock()
	opts := AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour}
	a, err := NewAppender(ctx, st, skey, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	for cycle := range 10 {
		b, err := NewAppender(ctx, st, skey, opts)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, x := range []*Appender{a, b} {
			wg.Go(func() {
				for i := range 20 {
					if _, err := x.Append(ctx, sampleRecord(i)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if a.LogID() == b.LogID() {
			t.Fatalf("cycle %d: two live appenders write log %s", cycle, a.LogID())
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(countLogs(t, st)); n != 2 {
		t.Fatalf("two instances, one restarted 10 times: %d logs", n)
	}
	a.Close(ctx)
	verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
}

// TestLeaseTakeover: a writer that stopped renewing (crashed, or paused)
// loses its log to the next appender once the lease expired; if it wakes
// up and writes, its batch collides with the new holder's create-only
// batch and its records go to a fresh log: nothing is lost, no sequence
// number holds two records, Verify passes.
func TestLeaseTakeover(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	st := newTestStore()
	c := newClock()
	st.Now = c.Now // the store's time is the test's (when it tells one, store.Clock)
	opts := AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour, LeaseTTL: time.Hour}
	zombie, err := NewAppender(ctx, st, skey, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := zombie.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Not past the lease: a second appender starts its own log.
	b, err := NewAppender(ctx, st, skey, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.LogID() == zombie.LogID() {
		t.Fatal("a held log was taken")
	}
	b.Close(ctx)
	// Past it (the zombie's renewals run on a real-time ticker of 20 min):
	// the next appender continues the zombie's log and seals its tail.
	c.mu.Lock()
	c.t = c.t.Add(2 * time.Hour)
	c.mu.Unlock()
	heir, err := NewAppender(ctx, st, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if heir.LogID() != zombie.LogID() && heir.LogID() != b.LogID() {
		t.Fatalf("heir started a new log %s", heir.LogID())
	}
	took := heir.LogID() == zombie.LogID()
	if !took {
		// It took the idle closed log of b; take the zombie's too.
		heir2, err := NewAppender(ctx, st, skey, AppenderOptions{Now: c.Now, CheckpointEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer heir2.Close(ctx)
		if heir2.LogID() != zombie.LogID() {
			t.Fatalf("expired log not continued: %s", heir2.LogID())
		}
		heir, heir2 = heir2, heir
	}
	rep := verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
	for _, l := range rep.Logs {
		if l.Log == zombie.LogID() && l.Unsealed != 0 {
			t.Fatalf("the heir did not seal the zombie's tail: %+v", l)
		}
	}
	// Both write now.
	for i := range 10 {
		for _, x := range []*Appender{zombie, heir} {
			r, err := x.Append(ctx, sampleRecord(100+i))
			if err != nil {
				t.Fatal(err)
			}
			if x == zombie && i > 0 && r.Log == heir.LogID() {
				t.Fatal("zombie keeps writing the heir's log")
			}
		}
	}
	if zombie.LogID() == heir.LogID() {
		t.Fatal("zombie did not move to a fresh log")
	}
	zombie.Close(ctx)
	heir.Close(ctx)
	verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
}

// TestReopenAttack: records appended after a final checkpoint by someone
// without the key fail, whether or not the final checkpoint is deleted (the
// latter caught with VerifyOptions.Finals, what --state remembers), and a
// continuation by an appender is not signing them.
func TestReopenAttack(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	forge := func(st *memstore.Store, log string, n int) {
		raws := flatRecords(t, st, log)
		r1, r2 := mustParse(t, raws[0]), mustParse(t, raws[0])
		r1.Seq, r2.Seq = int64(n), int64(n+1)
		r1.Principal, r2.Principal = "forger", "forger"
		st.SetBytes(batchKey(log, int64(n)), encodeBatch([][]byte{mustMarshal(t, r1), mustMarshal(t, r2)}))
	}
	t.Run("final kept", func(t *testing.T) {
		st := newTestStore()
		log := buildLog(t, st, skey, logSpec{n: 4, batch: 2, checkpoints: []int64{2}, final: true})
		forge(st, log, 4)
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassPastFinal, 4)
		// The next appender does not adopt (and sign) the forged records.
		a, err := NewAppender(ctx, st, skey, AppenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a.LogID() == log {
			t.Fatal("appender continued a log with records after its final checkpoint")
		}
		a.Close(ctx)
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassPastFinal, 4)
	})
	t.Run("final deleted", func(t *testing.T) {
		st := newTestStore()
		log := buildLog(t, st, skey, logSpec{n: 4, batch: 2, checkpoints: []int64{2}, final: true})
		rep := verifyOK(t, st, vkey, VerifyOptions{})
		finals := map[string]int64{log: rep.Logs[0].FinalSize}
		if finals[log] != 4 {
			t.Fatalf("FinalSize %d", finals[log])
		}
		if err := st.Delete(ctx, checkpointKey(log, 4, true)); err != nil {
			t.Fatal(err)
		}
		forge(st, log, 4)
		checkProblem(t, st, vkey, VerifyOptions{Finals: finals, Now: soonAfterBuild}, log, ClassReopened, -1)
	})
	t.Run("legitimate reopen", func(t *testing.T) {
		st := newTestStore()
		c := newClock()
		a := mustAppender(t, st, skey, AppenderOptions{Now: c.Now})
		a.Append(ctx, sampleRecord(0))
		a.Close(ctx)
		log := a.LogID()
		finals := verifyOK(t, st, vkey, VerifyOptions{Now: c.Now}).VerifiedSizes()
		b := mustAppender(t, st, skey, AppenderOptions{Now: c.Now})
		if b.LogID() != log {
			t.Fatal("closed log not continued")
		}
		if _, err := b.Append(ctx, sampleRecord(1)); err != nil {
			t.Fatal(err)
		}
		// Before b checkpoints: a live tail after a reopen checkpoint.
		l := verifyOK(t, st, vkey, VerifyOptions{Now: c.Now, Finals: finals}).Logs[0]
		if l.Unsealed != 1 || l.Final {
			t.Fatalf("report %+v", l)
		}
		b.Close(ctx)
		l = verifyOK(t, st, vkey, VerifyOptions{Now: c.Now, Finals: finals}).Logs[0]
		if !l.Final || l.Records != 2 || l.FinalSize != 2 {
			t.Fatalf("report %+v", l)
		}
	})
}

// TestVanishedAndForgedLogs: a log deleted as a whole is missing (its
// registry entry says it existed); a log copied in without a registry entry
// is unregistered; a registered log whose checkpoints were deleted is
// unsigned once older than the grace period, and Scan with Verified returns
// none of its records.
func TestVanishedAndForgedLogs(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	t.Run("vanished", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "keep"})
		log := buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "gone"})
		for _, k := range st.Keys() {
			if strings.HasPrefix(k, logPrefix(log)) {
				st.Delete(ctx, k)
			}
		}
		checkProblem(t, st, vkey, VerifyOptions{}, "gone", ClassMissing, -1)
	})
	t.Run("copied in", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "real"})
		other := newTestStore()
		otherKey, _, _ := GenerateKey("attacker")
		buildLog(t, other, otherKey, logSpec{n: 3, batch: 3, logID: "fake"})
		for _, k := range other.Keys() {
			if strings.HasPrefix(k, logPrefix("fake")) {
				b, _ := other.Bytes(k)
				st.SetBytes(k, b)
			}
		}
		checkProblem(t, st, vkey, VerifyOptions{Now: soonAfterBuild}, "fake", ClassUnregistered, 0)
		// Query with verified records only lists none of them.
		rep, _ := Verify(ctx, st, vkey, VerifyOptions{Now: soonAfterBuild})
		for r, err := range Scan(ctx, st, Filter{Verified: rep.VerifiedSizes()}) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Log == "fake" {
				t.Fatal("Scan of verified records yields a forged one")
			}
		}
	})
	t.Run("checkpoints deleted", func(t *testing.T) {
		st := newTestStore()
		log := buildLog(t, st, skey, logSpec{n: 4, batch: 2, checkpoints: []int64{2}, final: true})
		for _, k := range checkpointKeys(st, log) {
			st.Delete(ctx, k)
		}
		// Its lease says it was closed at 4: the final checkpoint must be
		// there, however fresh the records.
		checkProblem(t, st, vkey, VerifyOptions{Now: soonAfterBuild}, log, ClassReopened, -1)
		// The lease removed too. Fresh (a writer may not have signed yet):
		// a live unsealed tail.
		deleteLeases(t, st, log)
		if l := verifyOK(t, st, vkey, VerifyOptions{Now: soonAfterBuild}).Logs[0]; l.Unsealed != 4 {
			t.Fatalf("report %+v", l)
		}
		checkProblem(t, st, vkey, VerifyOptions{}, log, ClassUnsigned, 0)
		rep, _ := Verify(ctx, st, vkey, VerifyOptions{})
		n := 0
		for _, err := range Scan(ctx, st, Filter{Verified: rep.VerifiedSizes()}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 0 {
			t.Fatalf("Scan of verified records yields %d unsigned ones", n)
		}
	})
	t.Run("registry entry forged", func(t *testing.T) {
		st := newTestStore()
		buildLog(t, st, skey, logSpec{n: 4, batch: 2, final: true, logID: "x"})
		b, _ := st.Bytes(registryKey("x"))
		b[len(b)-3] ^= 1
		st.SetBytes(registryKey("x"), b)
		rep, err := Verify(ctx, st, vkey, VerifyOptions{})
		if !errors.Is(err, ErrTampered) || rep.OK() {
			t.Fatalf("forged registry entry: %v", err)
		}
	})
}

// TestHeadsWitness: heads taken before an erasure catch it, although the
// erased records went with their checkpoints.
func TestHeadsWitness(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	st := newTestStore()
	log := buildLog(t, st, skey, logSpec{n: 6, batch: 2, checkpoints: []int64{2, 4}, final: true})
	heads, err := Heads(ctx, st, vkey)
	if err != nil || len(heads) != 1 || heads[0].Tree.N != 6 || !heads[0].Final {
		t.Fatalf("Heads: %+v, %v", heads, err)
	}
	parsed, err := ParseHeads(FormatHeads(heads), vkey)
	if err != nil || len(parsed) != 1 || parsed[0].Tree != heads[0].Tree || string(parsed[0].Note) != string(heads[0].Note) {
		t.Fatalf("ParseHeads: %+v, %v", parsed, err)
	}
	// Erase the last batch and every checkpoint above 4: the store alone
	// shows a live log of 4 records.
	st.Delete(ctx, batchKey(log, 4))
	for _, k := range checkpointKeys(st, log) {
		if !strings.Contains(k, "00000000000000000002") && !strings.HasSuffix(k, "00000000000000000004") {
			st.Delete(ctx, k)
		}
	}
	// The log's lease still vouches for its 6 records.
	checkProblem(t, st, vkey, VerifyOptions{}, log, ClassTruncated, 4)
	deleteLeases(t, st, log)
	verifyOK(t, st, vkey, VerifyOptions{})
	trusted := map[string]Head{}
	for _, h := range parsed {
		trusted[h.Log] = h
	}
	checkProblem(t, st, vkey, VerifyOptions{Trusted: treesOf(parsed)}, log, ClassRollback, 4)
	// A note signed by another key is refused.
	_, otherV, _ := GenerateKey("other")
	if _, err := ParseHeads(FormatHeads(heads), otherV); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ParseHeads with another key: %v", err)
	}
	// So is a witness that vouches for nothing, or not only for heads.
	note := FormatHeads(heads)
	for name, b := range map[string][]byte{
		"empty":           nil,
		"blank lines":     []byte("\n\n\n"),
		"spaces":          []byte("   \n"),
		"garbage":         []byte("garbage\n"),
		"trailing text":   append(note, "junk\n"...),
		"cut in the note": note[:len(note)/2],
		"no signature":    []byte(strings.SplitN(string(note), "\n\n", 2)[0] + "\n\n"),
	} {
		if _, err := ParseHeads(b, vkey); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseHeads of a witness file %s: %v, want ErrCorrupt", name, err)
		}
	}
}

func treesOf(heads []Head) map[string]tlogTree {
	m := map[string]tlogTree{}
	for _, h := range heads {
		m[h.Log] = h.Tree
	}
	return m
}

var _ store.Store = (*getSpy)(nil)

type tlogTree = tlog.Tree

// TestLeaseFormat: the three states round-trip, and nothing else parses.
func TestLeaseFormat(t *testing.T) {
	var fr frontier
	for i := range 3 {
		fr.add(leafForTest(i))
	}
	exp := time.Date(2026, 4, 20, 9, 0, 0, 5, time.UTC)
	for _, l := range []lease{
		{log: "abc", holder: strings.Repeat("0f", 16), expires: exp, f: fr},
		{log: "abc", holder: strings.Repeat("0f", 16), expires: exp, closing: true, f: fr},
		{log: "abc", holder: strings.Repeat("0f", 16), released: true, f: fr},
	} {
		got, err := parseLease(l.marshal())
		if err != nil || got.closing != l.closing || got.released != l.released || !got.expires.Equal(l.expires) || got.f.root() != l.f.root() {
			t.Fatalf("round trip of %q: %+v, %v", l.marshal(), got, err)
		}
	}
	good := string((&lease{log: "abc", holder: strings.Repeat("0f", 16), expires: exp, closing: true}).marshal())
	for _, bad := range []string{
		strings.Replace(good, "closing ", "closing  ", 1),
		strings.Replace(good, "closing ", "Closing ", 1),
		strings.Replace(good, "closing ", "closing", 1),
		strings.Replace(good, "closing 2026-04-20T09:00:00.000000005Z", "closing released", 1),
		strings.Replace(good, "closing 2026-04-20T09:00:00.000000005Z", "released closing", 1),
	} {
		if _, err := parseLease([]byte(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseLease(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// deleteLeases removes every lease object of log, as someone erasing what
// the lease vouches for would.
func deleteLeases(t testing.TB, st *memstore.Store, log string) {
	t.Helper()
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, leaseDir(log)) {
			if err := st.Delete(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// clockStore is a memstore that tells the storage's time (store.Clock)
// from its own clock, or fails to.
type clockStore struct {
	*memstore.Store
	mu   sync.Mutex
	now  func() time.Time
	fail bool
}

var errNoTime = errors.New("clock unreadable")

func (c *clockStore) Time(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return time.Time{}, errNoTime
	}
	return c.now(), nil
}

func (c *clockStore) setFail(b bool) {
	c.mu.Lock()
	c.fail = b
	c.mu.Unlock()
}

var _ store.Clock = (*clockStore)(nil)

// skewed returns c's time moved by d: an instance whose clock is off.
func skewed(c *clock, d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

// advance moves c forward by d.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// leasesOf returns the signed leases stored for log, by generation.
func leasesOf(t *testing.T, st *memstore.Store, log string) map[int64]lease {
	t.Helper()
	_, vkey := keys(t)
	known := mustVerifiers(t, vkey)
	out := map[int64]lease{}
	for _, k := range st.Keys() {
		name, ok := strings.CutPrefix(k, leaseDir(log))
		if !ok {
			continue
		}
		g, ok := parseSeqName(name)
		if !ok {
			t.Fatalf("stray lease object %s", k)
		}
		b, _ := st.Bytes(k)
		l, err := openLease(b, known)
		if err != nil {
			t.Fatalf("lease %s: %v", k, err)
		}
		out[g] = l
	}
	return out
}

// TestLeaseExpiryOnStoreClock: an instance whose own clock runs three days
// ahead does not take over a log that is live by the store's clock, and
// writes its own lease's expiry on the store's clock too; once the
// writer's lease has expired on the store's clock, the log is continued.
// A store whose clock cannot be read blocks the takeover of a live lease.
func TestLeaseExpiryOnStoreClock(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	storage := newClock()
	cs := &clockStore{Store: newTestStore(), now: storage.Now}
	// The writer's renewals run on a real-time ticker of LeaseTTL/3 = 20
	// min: none happens during the test.
	live := mustAppender(t, cs, skey, AppenderOptions{Now: storage.Now, LeaseTTL: time.Hour})
	for i := range 3 {
		if _, err := live.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ahead := mustAppender(t, cs, skey, AppenderOptions{Now: skewed(storage, 72*time.Hour), LeaseTTL: time.Hour})
	if ahead.LogID() == live.LogID() {
		t.Fatal("an instance three days ahead took over a live log")
	}
	if _, err := ahead.Append(ctx, sampleRecord(9)); err != nil {
		t.Fatal(err)
	}
	if l := leasesOf(t, cs.Store, ahead.LogID())[0]; l.expires.After(storage.Now().Add(time.Hour + time.Minute)) {
		t.Fatalf("lease expiry %v written on the instance's own clock, not the store's (%v)", l.expires, storage.Now())
	}

	// The writer stops renewing (a crash): past its expiry on the store's
	// clock, the log is continued, but not while that clock is unreadable.
	storage.advance(2 * time.Hour)
	cs.setFail(true)
	blind := mustAppender(t, cs, skey, AppenderOptions{Now: skewed(storage, 72*time.Hour)})
	if blind.LogID() == live.LogID() {
		t.Fatal("a live lease was taken over while the store's clock could not be read")
	}
	cs.setFail(false)
	// Two logs are idle now (the live one and the skewed instance's, both
	// expired): the writer's is continued by one of the next two.
	continued := false
	for range 2 {
		heir := mustAppender(t, cs, skey, AppenderOptions{Now: storage.Now})
		if heir.LogID() != live.LogID() && heir.LogID() != ahead.LogID() {
			t.Fatalf("an expired log was not continued: %s", heir.LogID())
		}
		continued = continued || heir.LogID() == live.LogID()
	}
	if !continued {
		t.Fatal("the expired log was not continued")
	}
	verifyOK(t, cs.Store, vkey, VerifyOptions{Now: storage.Now})
}

// TestClosedByLoserStillVerifies: an instance whose clock runs days ahead
// (on a store that tells no time, noClock) takes over a live log; the
// writer that lost it then closes. It must not write its final checkpoint
// in the log now held by the other: the log still verifies, before and
// after the new holder closes it.
func TestClosedByLoserStillVerifies(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// between runs after the takeover, before the loser closes.
		between func(t *testing.T, st *memstore.Store, loser, taker *Appender)
	}{
		{"taker appends first", func(t *testing.T, _ *memstore.Store, _, taker *Appender) {
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
		{"loser appends first", func(t *testing.T, _ *memstore.Store, loser, taker *Appender) {
			// The loser's batch lands after the taker loaded the log; the
			// taker's next batch collides and moves to a fresh log.
			if _, err := loser.Append(ctx, sampleRecord(40)); err != nil {
				t.Fatal(err)
			}
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
		{"taker renewed past the generation it took", func(t *testing.T, st *memstore.Store, loser, taker *Appender) {
			// As a renewal does: the next generation written, the one
			// before deleted, so the loser's create-only closing
			// generation lands in the gap.
			log := loser.LogID()
			b, ok := st.Bytes(leaseKey(log, 1))
			if !ok {
				t.Fatal("no generation 1")
			}
			st.SetBytes(leaseKey(log, 2), b)
			if err := st.Delete(ctx, leaseKey(log, 1)); err != nil {
				t.Fatal(err)
			}
			taker.leaseMu.Lock()
			taker.lease.gen = 2
			taker.leaseMu.Unlock()
			if _, err := taker.Append(ctx, sampleRecord(50)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			st := newTestStore()
			loser := mustAppender(t, noClock{st}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
			for i := range 5 {
				if _, err := loser.Append(ctx, sampleRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := loser.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := loser.Append(ctx, sampleRecord(5)); err != nil { // an unsealed tail
				t.Fatal(err)
			}
			taker := mustAppender(t, noClock{st}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour)})
			if taker.LogID() != loser.LogID() {
				t.Fatal("setup: the skewed instance did not take the log over")
			}
			tc.between(t, st, loser, taker)
			if err := loser.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
			for _, k := range checkpointKeys(st, loser.LogID()) {
				if strings.HasSuffix(k, "-final") {
					t.Fatalf("the writer that lost the log closed it: %s", k)
				}
			}
			if err := taker.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, st, vkey, VerifyOptions{Now: c.Now})
		})
	}
}

// TestTakeoverWhileClosing: an instance days ahead takes a log over while
// its writer is between its closing lease and its final checkpoint (the
// closing lease looks expired on the instance's clock). Whichever final
// checkpoint lands first, the new holder's records follow a reopen
// checkpoint: the log verifies throughout.
func TestTakeoverWhileClosing(t *testing.T) {
	skey, vkey := keys(t)
	ctx := context.Background()
	for _, takerFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "taker writes the final", false: "closer's final lands first"}[takerFirst], func(t *testing.T) {
			c := newClock()
			hs := &hookStore{Store: newTestStore()}
			closer := mustAppender(t, noClock{hs}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
			for i := range 4 {
				if _, err := closer.Append(ctx, sampleRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			var taker *Appender
			take := func() {
				a, err := NewAppender(ctx, noClock{hs.Store}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour), CheckpointEvery: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				taker = a
			}
			hs.set(func(_ int, key string, _ store.PutOptions) error {
				if strings.HasSuffix(key, "-final") && takerFirst && taker == nil {
					take()
				}
				return nil
			}, func(_ int, key string) error {
				if strings.HasSuffix(key, "-final") && !takerFirst && taker == nil {
					take()
				}
				return nil
			})
			if err := closer.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if taker == nil {
				t.Fatal("setup: nobody took the log over")
			}
			defer taker.Close(ctx)
			if taker.LogID() != closer.LogID() {
				t.Fatalf("setup: the taker writes %s", taker.LogID())
			}
			verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now})
			for i := range 3 {
				if _, err := taker.Append(ctx, sampleRecord(10+i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := taker.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			l := verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now}).Logs[0]
			if l.Records != 7 || l.FinalSize != 4 || l.Unsealed != 0 {
				t.Fatalf("report %+v", l)
			}
			if err := taker.Close(ctx); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, hs.Store, vkey, VerifyOptions{Now: c.Now})
		})
	}
}

// deafLister hangs listings under prefix, ignoring their context, until
// release is closed.
type deafLister struct {
	*memstore.Store
	mu      sync.Mutex
	prefix  string // "": none
	release chan struct{}
}

func (d *deafLister) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	d.mu.Lock()
	deaf := d.prefix != "" && strings.HasPrefix(prefix, d.prefix)
	d.mu.Unlock()
	if deaf {
		<-d.release
	}
	return d.Store.List(ctx, prefix)
}

// TestCloseBoundedWhenListingHangs: the listings Close makes in a log it
// lost (which checkpoints exist, which lease generations) return when
// Close's context ends, even on a store deaf to it.
func TestCloseBoundedWhenListingHangs(t *testing.T) {
	skey, _ := keys(t)
	ctx := context.Background()
	c := newClock()
	dl := &deafLister{Store: newTestStore(), release: make(chan struct{})}
	defer close(dl.release)
	loser := mustAppender(t, noClock{dl}, skey, AppenderOptions{Now: c.Now, LeaseTTL: time.Hour})
	for i := range 3 {
		if _, err := loser.Append(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	taker := mustAppender(t, noClock{dl.Store}, skey, AppenderOptions{Now: skewed(c, 72*time.Hour)})
	if taker.LogID() != loser.LogID() {
		t.Fatal("setup: no takeover")
	}
	dl.mu.Lock()
	dl.prefix = auditPrefix // from now on: the appenders above listed freely
	dl.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- loser.Close(cctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Close = %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on a hung listing past its context")
	}
}
