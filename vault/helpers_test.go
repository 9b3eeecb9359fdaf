package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(redeemCrashEnv); dir != "" {
		os.Exit(redeemCrashChild(dir)) // the child process of TestRedeemCrash
	}
	if list := os.Getenv(slowClientEnv); list != "" {
		os.Exit(slowClients(list)) // the clients of TestSlowReadersBounded
	}
	if os.Getenv(rewrapChildEnv) != "" {
		os.Exit(rewrapChild()) // a child process of TestRewrapSurvivesSIGKILL
	}
	os.Exit(miniotest.Main(m))
}

// fakeClock is an injected clock (vaulttest.Clock); tests move it, never
// sleep.
type fakeClock = memstore.Clock

func newClock() *fakeClock { return memstore.NewClock() }

// testKEK is an in-memory KEK (internal/kektest).
func testKEK(t testing.TB) kms.KEK { return kektest.New(t) }

type backend struct {
	name string
	new  func(t testing.TB) store.Store
}

// storeClocks holds the injected clock each test store tells its time by
// (store.Clock): the vault checks its own clock against the store's before
// anything irreversible, so a test that moves the vault's clock moves the
// store's with it. openTestVault gives the vault the store's clock.
var storeClocks sync.Map // store.Store → *fakeClock

// clockOf returns the clock st tells its time by (a new one for a store
// made elsewhere, which a memstore then follows).
func clockOf(st store.Store) *fakeClock {
	if c, ok := storeClocks.Load(st); ok {
		return c.(*fakeClock)
	}
	c := newClock()
	if m, ok := st.(*memstore.Store); ok && m.Now == nil {
		m.Now = c.Now
	}
	storeClocks.Store(st, c)
	return c
}

func fsBackend(t testing.TB) store.Store { return clocked(testenv.FS(t)) }

func s3Backend(t testing.TB) store.Store { return clocked(testenv.S3(t, miniotest.Server(t))) }

// fsBackendAt is fsBackend in dir, for a test that reaches the files.
func fsBackendAt(t testing.TB, dir string) store.Store { return clocked(testenv.FSAt(t, dir)) }

// s3BackendAt is an s3store on bucket of srv telling its time by c.
func s3BackendAt(t testing.TB, srv *miniotest.Srv, bucket string, c *fakeClock) *s3store.Store {
	st := testenv.S3At(t, srv, bucket, c)
	clocked(st, c)
	return st
}

// clocked notes c as the clock st tells its time by.
func clocked(st store.Store, c *fakeClock) store.Store {
	storeClocks.Store(st, c)
	return st
}

// backends are the real stores every vault-level property is checked on.
var backends = []backend{{"fs", fsBackend}, {"s3", s3Backend}}

type testVault struct {
	*Vault
	st    store.Store
	clock *fakeClock
}

func openTestVault(t testing.TB, st store.Store, kek kms.KEK, mod func(*Config)) *testVault {
	t.Helper()
	clock := clockOf(st)
	cfg := Config{Store: st, KEK: kek, Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	return &testVault{Vault: v, st: st, clock: clock}
}

func newMemVault(t testing.TB) (*testVault, *memstore.Store) {
	st := memstore.New()
	return openTestVault(t, st, testKEK(t), nil), st
}

// image returns n bytes that sniff as JPEG and carry marker (if it fits)
// in the middle, so tests can search storage for the plaintext.
var image = testenv.JPEG

func putImage(t testing.TB, v *testVault, b []byte, subject string) Info {
	t.Helper()
	info, err := v.Put(context.Background(), Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: subject, Kind: "drivers-license"})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func grant(t testing.TB, v *testVault, id, principal string) Grant {
	t.Helper()
	g, err := v.Grant(context.Background(), id, Access{Principal: principal, Purpose: "age-check"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// redeemAll redeems and reads everything; a read error is returned as err.
func redeemAll(v *testVault, tok, principal string) ([]byte, error) {
	rc, _, err := v.Redeem(context.Background(), tok, Requester{Principal: principal, RemoteAddr: "127.0.0.1:1"})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// storeKeys lists every key in st; readKey reads one.
var storeKeys, readKey = testenv.Keys, testenv.Read

// until calls f(0), f(1), ... until stop is closed or f returns false.
var until = testenv.Until

// grantRead grants id to "reviewer", redeems the token and checks that
// the bytes are want.
func grantRead(ctx context.Context, v *testVault, id string, want []byte) error {
	g, err := v.Grant(ctx, id, Access{Principal: "reviewer", Purpose: "age-check"})
	if err != nil {
		return err
	}
	got, err := redeemAll(v, g.Token, "reviewer")
	if err == nil && !bytes.Equal(got, want) {
		err = errors.New("wrong bytes")
	}
	return err
}

// testActor is the acting principal of administrative calls in tests.
var testActor = Actor{Principal: "operator-1", Reason: "test"}

// flush waits until the folder has folded every release so far.
func (f *folder) flush(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.sync(ctx)
}

// syncAll waits until every vault's releases are in its log.
func syncAll(t testing.TB, vs ...*testVault) {
	t.Helper()
	for _, v := range vs {
		if err := v.Admin().SyncAudit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// releases counts the release records (redeem ok) in st's logs by token,
// failing t if a token was released more than once.
func releases(t testing.TB, st store.Store) map[string]int {
	t.Helper()
	released := map[string]int{}
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeOK}) {
		if err != nil {
			t.Fatal(err)
		}
		if released[r.TokenID]++; released[r.TokenID] > 1 {
			t.Fatalf("token %s released %d times in the log", r.TokenID, released[r.TokenID])
		}
	}
	return released
}

// cutReader reads left bytes of r, then fails with err: an upload or a
// payload whose connection drops. With wait set it first waits for wait
// to be closed: a connection that stalls until its reader gives up.
type cutReader struct {
	r    io.Reader
	left int64
	err  error
	wait <-chan struct{}
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if c.wait != nil {
			<-c.wait
		}
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// readCloser is a Reader with its own Close.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// putMembers puts n small documents, the i-th for subject member-i, and
// returns their IDs.
func putMembers(t testing.TB, v *testVault, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = putImage(t, v, image(100+i, ""), fmt.Sprint("member-", i)).ID
	}
	return ids
}
