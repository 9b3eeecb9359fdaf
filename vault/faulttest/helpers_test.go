package faulttest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/vaulttest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashDirEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(miniotest.Main(m))
}

// clock is an injected clock: tests move it, never sleep for correctness.
type clock = vaulttest.Clock

func newClock() *clock { return vaulttest.NewClock() }

type backend struct {
	name string
	new  func(t testing.TB) store.Store
}

// backends are the real stores each property is checked on.
var backends = []backend{{"fs", fsBackend}, {"s3", s3Backend}}

// storeClocks holds the injected clock each test store tells its time by
// (store.Clock): the vault refuses anything irreversible while its clock
// and the store's disagree, so a test that moves one moves both.
var storeClocks sync.Map // store.Store → *clock

// clockOf returns the clock st tells its time by (a new one for a store
// that cannot tell: a wrapper).
func clockOf(st store.Store) *clock {
	c, _ := storeClocks.LoadOrStore(st, newClock())
	return c.(*clock)
}

func fsBackend(t testing.TB) store.Store { return clocked(testenv.FS(t)) }

func s3Backend(t testing.TB) store.Store {
	return s3On(t, miniotest.Server(t))
}

// privateMinIO starts a MinIO server of the test's own, which it may kill
// or pause; it is stopped at cleanup.
func privateMinIO(t testing.TB) *miniotest.Srv {
	t.Helper()
	srv, err := miniotest.Start()
	if err != nil {
		if errors.Is(err, miniotest.ErrNoBinary) && os.Getenv("CI") != "true" {
			t.Skip(err.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func s3On(t testing.TB, srv *miniotest.Srv) store.Store { return clocked(testenv.S3(t, srv)) }

// clocked notes c as the clock st tells its time by.
func clocked(st store.Store, c *clock) store.Store {
	storeClocks.Store(st, c)
	return st
}

// openVault opens a vault with an injected clock; it is closed at cleanup
// with a bounded context (the store may be dead by then).
func openVault(t testing.TB, st store.Store, kek kms.KEK, mod func(*vault.Config)) (*vault.Vault, *clock) {
	t.Helper()
	clk := clockOf(st)
	cfg := vault.Config{Store: st, KEK: kek, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := vault.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		v.Close(ctx)
	})
	return v, clk
}

var operator = vault.Actor{Principal: "operator-1", Reason: "fault test"}

// jpeg returns n bytes that sniff as JPEG.
func jpeg(n int) []byte { return testenv.JPEG(n, "") }

// put stores a 4 KiB document; all of a test's documents share one
// subject, "member-of-all".
func put(t testing.TB, v *vault.Vault, retention time.Duration) vault.Info {
	t.Helper()
	b := jpeg(4 << 10)
	info, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: "member-of-all", Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// keys, exists, read and write look into a store.
var keys, exists, read, write = testenv.Keys, testenv.Exists, testenv.Read, testenv.Write

// alertLog keeps the alerts a vault raises.
type alertLog struct {
	mu     sync.Mutex
	alerts []vault.Alert
}

func (l *alertLog) add(a vault.Alert) { l.mu.Lock(); l.alerts = append(l.alerts, a); l.mu.Unlock() }

func (l *alertLog) all() []vault.Alert {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.alerts)
}

// openAlerting opens a vault on st (a new test KEK) whose alerts go to
// the log it returns.
func openAlerting(t testing.TB, st store.Store) (*vault.Vault, *clock, *alertLog) {
	al := &alertLog{}
	v, clk := openVault(t, st, kektest.New(t), func(c *vault.Config) { c.Detection.OnAlert = al.add })
	return v, clk, al
}

// review is the access the tests grant: reviewer-1, checking an age.
var review = vault.Access{Principal: "reviewer-1", Purpose: "age-check"}

// grant grants id to reviewer-1, failing t on an error.
func grant(t testing.TB, v *vault.Vault, id string) vault.Grant {
	t.Helper()
	g, err := v.Grant(context.Background(), id, review)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// records returns the audit records matching f.
func records(t testing.TB, st store.Store, f audit.Filter) []audit.Record {
	t.Helper()
	var out []audit.Record
	for r, err := range audit.Scan(context.Background(), st, f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// checkPutTrail: a "put ok" record exists only for a stored document.
func checkPutTrail(t testing.TB, st store.Store) {
	t.Helper()
	for _, r := range records(t, st, audit.Filter{Event: audit.EventPut, Outcome: audit.OutcomeOK}) {
		if !exists(t, st, "keys/"+r.Object) {
			t.Errorf("put ok record %s seq %d names a document that was never stored", r.Log, r.Seq)
		}
	}
}

// within runs f with a context whose deadline is putDeadline, fails t if
// f takes longer than putLimit, and returns f's error.
func within(t testing.TB, what string, f func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), putDeadline)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := time.Since(start)
	if d > putLimit {
		t.Errorf("%s returned after %v, limit %v (err: %v)", what, d.Round(time.Millisecond), putLimit, err)
	}
	t.Logf("%s returned after %v", what, d.Round(time.Millisecond))
	return err
}

// faultStore wraps a store and runs hooks around Put and Delete: a hook's
// error is returned instead of calling the store (a failure), and a hook
// may block until ctx ends (a hang).
type faultStore struct {
	store.Store
	mu       sync.Mutex
	onPut    func(ctx context.Context, key string) error
	afterPut func(key string, err error)
	onDelete func(ctx context.Context, key string) error
}

func (f *faultStore) hooks() (func(context.Context, string) error, func(string, error), func(context.Context, string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.onPut, f.afterPut, f.onDelete
}

func (f *faultStore) set(onPut func(context.Context, string) error, afterPut func(string, error), onDelete func(context.Context, string) error) {
	f.mu.Lock()
	f.onPut, f.afterPut, f.onDelete = onPut, afterPut, onDelete
	f.mu.Unlock()
}

func (f *faultStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	on, after, _ := f.hooks()
	if on != nil {
		if err := on(ctx, key); err != nil {
			return err
		}
	}
	err := f.Store.Put(ctx, key, body, size, opts)
	if after != nil {
		after(key, err)
	}
	return err
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	_, _, on := f.hooks()
	if on != nil {
		if err := on(ctx, key); err != nil {
			return err
		}
	}
	return f.Store.Delete(ctx, key)
}

func (f *faultStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return f.Store.List(ctx, prefix)
}

var errInjected = errors.New("injected store failure")

// failPrefix fails writes under prefix.
func failPrefix(prefix string) func(context.Context, string) error {
	return func(_ context.Context, key string) error {
		if strings.HasPrefix(key, prefix) {
			return errInjected
		}
		return nil
	}
}

// hangPrefix blocks writes under prefix until their context ends or
// release is closed (the store answers again, as a SIGSTOPped server does
// after SIGCONT); then the write goes through.
func hangPrefix(prefix string, release <-chan struct{}) func(context.Context, string) error {
	return func(ctx context.Context, key string) error {
		if strings.HasPrefix(key, prefix) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-release:
			}
		}
		return nil
	}
}

// deafPrefix hangs calls on keys under prefix until release, ignoring
// their context.
func deafPrefix(prefix string, release <-chan struct{}) func(context.Context, string) error {
	return func(ctx context.Context, key string) error {
		if strings.HasPrefix(key, prefix) {
			<-release
		}
		return nil
	}
}

// KMS faults.

// grpcCode, grpcStatus and grpcError have the shape of grpc's codes.Code,
// *status.Status and status errors: what a Tink KMS client (gcpkms) returns
// when its RPC fails.
type grpcCode uint32

type grpcStatus struct{ code grpcCode }

func (s *grpcStatus) Code() grpcCode { return s.code }

type grpcError struct{ s *grpcStatus }

func (e grpcError) Error() string           { return "rpc error: code = Unavailable desc = connection refused" }
func (e grpcError) GRPCStatus() *grpcStatus { return e.s }

// kmsAEAD is a real Tink AES-256-GCM AEAD standing in for a KMS client's
// AEAD; while down is set its calls fail as an unreachable KMS's do (gRPC
// Unavailable).
type kmsAEAD struct {
	a    tink.AEAD
	down atomic.Bool
}

func newKMSAEAD(t testing.TB) *kmsAEAD { return &kmsAEAD{a: kektest.NewAEAD()} }

func (k *kmsAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	if k.down.Load() {
		return nil, grpcError{&grpcStatus{14}}
	}
	return k.a.Encrypt(pt, ad)
}

func (k *kmsAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	if k.down.Load() {
		return nil, grpcError{&grpcStatus{14}}
	}
	return k.a.Decrypt(ct, ad)
}

// plainKEK is a kms.KEK written by someone else (an HSM adapter, say): it
// knows nothing of kms.ErrUnavailable. In mode "fail" its calls return its
// own error; in mode "hang" they block until the context ends.
type plainKEK struct {
	inner kms.KEK
	mode  atomic.Value // "", "fail", "hang"
}

func (k *plainKEK) ID() string { return k.inner.ID() }

func (k *plainKEK) fault(ctx context.Context) error {
	switch k.mode.Load() {
	case "fail":
		return errors.New("hsm: session closed")
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (k *plainKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if err := k.fault(ctx); err != nil {
		return nil, err
	}
	return k.inner.Encrypt(ctx, pt, ad)
}

func (k *plainKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if err := k.fault(ctx); err != nil {
		return nil, err
	}
	return k.inner.Decrypt(ctx, ct, ad)
}
