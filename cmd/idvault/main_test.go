package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

func TestMain(m *testing.M) {
	// Keysets the CLI creates derive their key cheaply in the tests (the
	// kms package tests the defaults).
	keysetKDF = kms.LocalOptions{Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	os.Exit(miniotest.Main(m))
}

// result is what one run of the CLI produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI with args and the environment env (nothing else from
// the process environment leaks in).
func runCLI(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return result{code, out.String(), errb.String()}
}

// outputLines runs the CLI with env and args, fails t unless it exits 0,
// and returns its output lines and the whole result.
func outputLines(t testing.TB, env map[string]string, args ...string) ([]string, result) {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != exitOK {
		t.Fatalf("idvault %q: want exit 0, got %v", args, r)
	}
	return strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"), r
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.code, r.stdout, r.stderr)
}

// Fixture identifiers. Object and token IDs are lower-case hex, as the vault
// writes them.
var (
	base  = time.Date(2021, 4, 20, 10, 0, 0, 0, time.UTC)
	obj1  = strings.Repeat("a1", 16)
	obj2  = strings.Repeat("b2", 16)
	obj3  = strings.Repeat("c3", 16)
	tok   = strings.Repeat("d4", 16)
	subj  = strings.Repeat("e5", 32)
	evilP = "evil\t\x1b[31mred"
)

// fixtureLogA and fixtureLogB are the records of the two logs of the
// fixture, in order; stats expectations in the tests follow from them.
func fixtureLogA() []audit.Record {
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	return []audit.Record{
		{Time: at(1), Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: obj1, Principal: "uploader", Subject: subj},
		{Time: at(2), Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: obj2, Principal: "uploader", Subject: subj},
		{Time: at(3), Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: obj3, Principal: "uploader"},
		{Time: at(5), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Object: obj1, Principal: "reviewer-1", Purpose: "age-check", TokenID: tok},
		{Time: at(6), Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Object: obj1, Principal: "reviewer-1", Purpose: "age-check", TokenID: tok, RemoteAddr: "192.0.2.7:5555"},
		{Time: at(10), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Object: obj2, Principal: "reviewer-1", Purpose: "age-check"},
		{Time: at(11), Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "wrong-principal", Object: obj2, Principal: "reviewer-2"},
		{Time: at(60), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Object: obj3, Principal: "reviewer-2", Purpose: "kyc"},
		{Time: at(61), Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Object: obj3, Principal: "reviewer-2", Purpose: "kyc"},
		{Time: at(62), Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "token-replayed", Object: obj3, Principal: "reviewer-2", Detail: "second use"},
		{Time: at(90), Event: audit.EventGrant, Outcome: audit.OutcomeRefused, Reason: "quota-exceeded", Object: obj1, Principal: evilP, Detail: "quota 200/h"},
	}
}

func fixtureLogB() []audit.Record {
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	return []audit.Record{
		{Time: at(150), Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "token-expired", Object: obj3, Principal: "reviewer-1"},
		{Time: at(151), Event: audit.EventSweep, Outcome: audit.OutcomeOK, Detail: "removed 0"},
		{Time: at(160), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Object: obj1, Principal: "reviewer-1", Purpose: "age-check"},
	}
}

// fixture is a store directory holding two closed audit logs and the
// published verifier key.
type fixture struct {
	dir         string
	verifierKey string
	logs        []string // log IDs, in the order written
}

// newFixture builds the fixture in a temporary directory with real
// Appenders on an fsstore.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{dir: dir}
	st := openFS(t, dir)
	fx.verifierKey, fx.logs = writeLogs(t, st, fixtureLogA(), fixtureLogB())
	return fx
}

// writeLogs writes each record list as one closed log, publishes the
// verifier key under system/audit-verifier, and returns the key and the log
// IDs.
func writeLogs(t testing.TB, st store.Store, logs ...[]audit.Record) (string, []string) {
	t.Helper()
	signer, verifier := publishNewKey(t, st, "idvault-audit-test")
	var ids []string
	for _, recs := range logs {
		ids = append(ids, writeClosedLog(t, st, signer, audit.AppenderOptions{
			CheckpointRecords: 4,
			CheckpointEvery:   time.Hour, // only record counts and Close trigger checkpoints
			Now:               func() time.Time { return base.Add(6 * time.Hour) },
		}, recs...))
	}
	return verifier, ids
}

// publishNewKey generates an audit signing key named name and publishes
// its verifier key under system/audit-verifier in st.
func publishNewKey(t testing.TB, st store.Store, name string) (signer, verifier string) {
	t.Helper()
	signer, verifier, err := audit.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	pub := []byte(verifier + "\n")
	if err := st.Put(context.Background(), auditVerifierKey, bytes.NewReader(pub), int64(len(pub)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}

// newAppender generates an audit signing key named name and opens an
// Appender on st with it and opts. It returns the Appender and the
// verifier key, which it does not publish.
func newAppender(t testing.TB, st store.Store, name string, opts audit.AppenderOptions) (*audit.Appender, string) {
	t.Helper()
	signer, verifier, err := audit.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := audit.NewAppender(context.Background(), st, signer, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, verifier
}

// writeClosedLog appends recs to a new log (one per call, as another vault
// instance writes) with the options opts, closes it and returns its ID.
func writeClosedLog(t testing.TB, st store.Store, signer string, opts audit.AppenderOptions, recs ...audit.Record) string {
	t.Helper()
	ctx := context.Background()
	opts.NewLog = true
	a, err := audit.NewAppender(ctx, st, signer, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := a.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return a.LogID()
}

// auditFiles lists the files of every audit object of the fixture, but
// the leases: unsigned hints between writers, never believed by Verify.
func (fx *fixture) auditFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(fx.dir, "audit"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "_lease" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	slices.Sort(c)
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }

// openFS opens an fsstore on dir for writing fixtures.
// newTestVault opens a vault on cfg and fails t if it does not open. The
// caller closes it (before the CLI reads the store).
func newTestVault(t testing.TB, cfg vault.Config) *vault.Vault {
	t.Helper()
	v, err := vault.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// testImage is a JPEG-like document body of 4+n bytes.
func testImage(n int) []byte { return append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, n)...) }

// putDocs stores n documents with body img for subject (retention ret, or
// the vault's default for 0) and returns their IDs.
func putDocs(t testing.TB, v *vault.Vault, img []byte, n int, subject string, ret time.Duration) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		info, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: subject, Retention: ret})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = info.ID
	}
	return ids
}

// readDoc grants document id to principal "r" for purpose, redeems the
// token and returns the image and the token.
func readDoc(t testing.TB, v *vault.Vault, id, purpose string) ([]byte, string) {
	t.Helper()
	ctx := context.Background()
	g, err := v.Grant(ctx, id, vault.Access{Principal: "r", Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return got, g.Token
}

// refused reports whether a parser refused its input (err != nil), and
// fails t when the refusal does not wrap sentinel: every parser's errors
// are typed, so that a caller can tell bad input from a fault.
func refused(t testing.TB, err, sentinel error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not wrap %v", err, sentinel)
	}
	return err != nil
}

func openFS(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := fsstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
