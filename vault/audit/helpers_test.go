package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault/store"
)

// testKeys is one fixed signing key pair, derived from a constant seed so
// that the signed checkpoints in testdata/fuzz stay valid across runs. It
// protects nothing.
var testKeys = sync.OnceValues(func() ([2]string, error) {
	const name = "idvault-audit-test"
	seed := sha256.Sum256([]byte("idvault audit test key"))
	pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return [2]string{}, err
	}
	parts := strings.Split(vkey, "+") // name, key hash, key
	skey := "PRIVATE+KEY+" + name + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed[:]...))
	return [2]string{skey, vkey}, nil
})

func keys(t testing.TB) (signer, verifier string) {
	t.Helper()
	k, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k[0], k[1]
}

// clock is a settable, concurrency-safe fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 4, 20, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond) // strictly increasing, like a real clock
	return c.t
}

// sampleRecord is record i of a test log: every field used, varying with i
// (Log and Seq are left for the appender).
func sampleRecord(i int) Record {
	events := []Event{EventPut, EventGrant, EventRedeem, EventRedeem, EventDelete}
	r := Record{
		Event:      events[i%len(events)],
		Outcome:    OutcomeOK,
		Object:     fmt.Sprintf("%032x", i*7919),
		Principal:  fmt.Sprintf("reviewer-%d", i%13),
		Purpose:    "age-check",
		TokenID:    fmt.Sprintf("%032x", i),
		RemoteAddr: fmt.Sprintf("192.0.2.%d:443", i%250),
		Subject:    fmt.Sprintf("%064x", i%17),
		Detail:     fmt.Sprintf("n=%d", i),
	}
	if i%4 == 3 {
		r.Outcome, r.Reason = OutcomeRefused, "token-expired"
	}
	return r
}

type logSpec struct {
	n           int
	batch       int     // records per batch object
	checkpoints []int64 // sizes of intermediate checkpoints (batch boundaries)
	final       bool
	logID       string
	mutate      func(i int, r *Record) // changes record i before it is written
}

// buildLog lays out a log exactly as spec says, through the appender's own
// commit and checkpoint code (its goroutines are not started).
func buildLog(t testing.TB, st store.Store, signerKey string, spec logSpec) string {
	t.Helper()
	ctx := context.Background()
	c := newClock()
	a, err := newAppender(ctx, st, signerKey, AppenderOptions{LogID: spec.logID, Now: c.Now, MaxBatch: max(spec.batch, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.cancel()
	for i := 0; i < spec.n; {
		k := min(spec.batch, spec.n-i)
		reqs := make([]*request, k)
		for j := range reqs {
			r := sampleRecord(i + j)
			if spec.mutate != nil {
				spec.mutate(i+j, &r)
			}
			reqs[j] = &request{ctx: ctx, rec: r, done: make(chan result, 1)}
		}
		a.commit(reqs)
		for _, r := range reqs {
			if res := <-r.done; res.err != nil {
				t.Fatal(res.err)
			}
		}
		i += k
		if slices.Contains(spec.checkpoints, int64(i)) {
			if err := a.writeCheckpoints(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if spec.final {
		if err := a.writeCheckpoints(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	return a.w.id
}

// batchObj is one stored batch, as an attacker sees it.
type batchObj struct {
	key  string
	raws [][]byte
}

func readBatches(t testing.TB, st *memstore.Store, log string) []batchObj {
	t.Helper()
	var out []batchObj
	for _, k := range st.Keys() {
		name, ok := strings.CutPrefix(k, logPrefix(log))
		if !ok {
			continue
		}
		if _, ok := parseSeqName(name); !ok {
			continue
		}
		b, _ := st.Bytes(k)
		raws, err := splitBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, batchObj{key: k, raws: raws})
	}
	return out
}

func splitBatch(b []byte) ([][]byte, error) {
	if _, err := parseBatch(b); err != nil {
		return nil, err
	}
	var raws [][]byte
	b = b[batchHeaderLen:]
	for len(b) > 0 {
		n := binary.BigEndian.Uint32(b)
		raws = append(raws, bytes.Clone(b[4:4+n]))
		b = b[4+n:]
	}
	return raws, nil
}

func encodeBatch(raws [][]byte) []byte {
	b := appendBatchHeader(nil, len(raws))
	for _, r := range raws {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// flatRecords returns every record's bytes in stored order.
func flatRecords(t testing.TB, st *memstore.Store, log string) [][]byte {
	var all [][]byte
	for _, b := range readBatches(t, st, log) {
		all = append(all, b.raws...)
	}
	return all
}

// relayLog replaces every batch object of log by batches of size batch
// holding raws, named by position: what an attacker who rewrites the
// storage directly can do.
func relayLog(t testing.TB, st *memstore.Store, log string, raws [][]byte, batch int) {
	t.Helper()
	ctx := context.Background()
	for _, b := range readBatches(t, st, log) {
		if err := st.Delete(ctx, b.key); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(raws); i += batch {
		j := min(i+batch, len(raws))
		st.SetBytes(batchKey(log, int64(i)), encodeBatch(raws[i:j]))
	}
}

func checkpointKeys(st *memstore.Store, log string) []string {
	var out []string
	for _, k := range st.Keys() {
		if strings.HasPrefix(k, checkpointPrefix(log)) {
			out = append(out, k)
		}
	}
	return out
}

func mustParse(t testing.TB, raw []byte) Record {
	t.Helper()
	r, err := ParseRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustMarshal(t testing.TB, r Record) []byte {
	t.Helper()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestStore() *memstore.Store { return memstore.New() }

// mustAppender starts an appender that is closed when the test ends (if
// the test did not close it).
func mustAppender(t testing.TB, st store.Store, signerKey string, opts AppenderOptions) *Appender {
	t.Helper()
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = time.Hour // tests checkpoint explicitly
	}
	if opts.CheckpointRecords == 0 {
		opts.CheckpointRecords = 1 << 30
	}
	a, err := NewAppender(context.Background(), st, signerKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// loggedSample is sampleRecord(i) as stored at seq i of log "l".
func loggedSample(i int) Record {
	r := sampleRecord(i)
	r.Log, r.Seq, r.Time = "l", int64(i), time.Date(2026, 4, 20, 9, 0, i, 0, time.UTC)
	return r
}

// mustVerifiers returns the note verifiers of vkey.
func mustVerifiers(t testing.TB, vkey string) note.Verifiers {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return note.VerifierList(v)
}

// getSpy counts the Gets of a memstore: in all, per key, and of batch
// objects that exist (what reading a log costs).
type getSpy struct {
	*memstore.Store
	mu      sync.Mutex
	all     int
	keys    map[string]int
	batches int
}

func (g *getSpy) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := g.Store.Get(ctx, key)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all++
	if g.keys == nil {
		g.keys = map[string]int{}
	}
	g.keys[key]++
	if rest, ok := strings.CutPrefix(key, auditPrefix); ok && rest[0] != '_' && err == nil {
		if _, ok := parseSeqName(rest[strings.IndexByte(rest, '/')+1:]); ok {
			g.batches++
		}
	}
	return rc, err
}

// allGets, keyGets and batchGets return the counts; resetGets zeroes them.
func (g *getSpy) allGets() int           { g.mu.Lock(); defer g.mu.Unlock(); return g.all }
func (g *getSpy) keyGets(key string) int { g.mu.Lock(); defer g.mu.Unlock(); return g.keys[key] }
func (g *getSpy) batchGets() int         { g.mu.Lock(); defer g.mu.Unlock(); return g.batches }
func (g *getSpy) resetGets()             { g.mu.Lock(); defer g.mu.Unlock(); g.all, g.keys, g.batches = 0, nil, 0 }

// noClock hides the wrapped store's own clock (store.Clock), if it has one:
// leases are then written and judged on the appenders' clocks, as on a
// store that tells no time. Tests of what a skewed appender clock does use
// it, so that they keep testing that whatever the backend grows.
type noClock struct{ store.Store }

// resigns checks a signed entry's round trip for a fuzz target: if b
// opens, the entry signs again and opens to the same entry.
func resigns[E comparable](t *testing.T, b []byte, open func([]byte) (E, error), sign func(E) ([]byte, error)) {
	t.Helper()
	e, err := open(b)
	if err != nil {
		return
	}
	again, err := sign(e)
	if err != nil {
		t.Fatalf("opened entry does not re-sign: %v", err)
	}
	if e2, err := open(again); err != nil || e2 != e {
		t.Fatalf("re-signed entry differs: %v", err)
	}
}
