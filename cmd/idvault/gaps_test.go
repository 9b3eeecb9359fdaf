package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// gapStore is a store directory with one closed log written by a signer
// the test keeps, so that it can play a second vault instance.
type gapStore struct {
	dir, signer, verifier string
	st                    store.Store
	logs                  []string
}

func newGapStore(t *testing.T) *gapStore {
	t.Helper()
	g := newKeyedStore(t, "idvault-audit-gaps")
	g.writeLog(t, 5)
	return g
}

// newKeyedStore is an fsstore in a temporary directory with a new audit
// signing key named name, its verifier key published, and no log yet.
func newKeyedStore(t *testing.T, name string) *gapStore {
	t.Helper()
	g := &gapStore{dir: t.TempDir()}
	g.st = openFS(t, g.dir)
	g.signer, g.verifier = publishNewKey(t, g.st, name)
	return g
}

// writeLog writes and closes a log of n records, as another vault instance
// (a new log) would.
func (g *gapStore) writeLog(t *testing.T, n int) string {
	t.Helper()
	recs := make([]audit.Record, n)
	for i := range recs {
		recs[i] = audit.Record{Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "reviewer-" + itoa(i), Object: obj1}
	}
	id := writeClosedLog(t, g.st, g.signer, audit.AppenderOptions{CheckpointEvery: time.Hour}, recs...)
	g.logs = append(g.logs, id)
	return id
}

func (g *gapStore) path(parts ...string) string {
	return filepath.Join(append([]string{g.dir}, parts...)...)
}

// forgeBatch writes a batch of two forged redemptions at position n of
// log, copying a real record's shape.
func (g *gapStore) forgeBatch(t *testing.T, log string, n int64) {
	t.Helper()
	var recs [][]byte
	for i := range int64(2) {
		r := audit.Record{Time: time.Now().UTC(), Log: log, Seq: n + i, Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "forged", Object: obj2}
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b)
	}
	b := []byte("IDVB\x01\x00\x00\x00\x02")
	for _, r := range recs {
		b = append(b, byte(len(r)>>24), byte(len(r)>>16), byte(len(r)>>8), byte(len(r)))
		b = append(b, r...)
	}
	name := filepath.Join(g.dir, "audit", log, strings.Repeat("0", 20-len(itoa(int(n))))+itoa(int(n)))
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (g *gapStore) verify(t *testing.T, extra ...string) result {
	t.Helper()
	return runCLI(t, nil, append([]string{"audit", "verify", "--store", g.dir}, extra...)...)
}

func wantFailed(t *testing.T, what string, r result, class audit.Class) {
	t.Helper()
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: ") || class != "" && !strings.Contains(r.stdout, string(class)) {
		t.Fatalf("%s: want exit 1 with %q, got %v", what, class, r)
	}
}

// TestVerifyClosedLogReopened: delete a closed log's final checkpoint and
// append a batch of forged records. Before: exit 0 with "unsealed tail 2".
func TestVerifyClosedLogReopened(t *testing.T) {
	g := newGapStore(t)
	state := filepath.Join(t.TempDir(), "state")
	if r := g.verify(t, "--verifier-key", g.verifier, "--state", state); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}
	log := g.logs[0]
	if err := os.Remove(g.path("audit", log, "checkpoints", "00000000000000000005-final")); err != nil {
		t.Fatal(err)
	}
	g.forgeBatch(t, log, 5)
	wantFailed(t, "final checkpoint deleted, records forged", g.verify(t, "--verifier-key", g.verifier, "--state", state), audit.ClassReopened)
	// query shows none of the forged records, whatever Verify says.
	r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--principal", "forged")
	if r.code != exitOK || r.stdout != "" {
		t.Fatalf("query lists forged records: %v", r)
	}
}

// TestVerifyLogVanished: after a verification, a second instance writes
// and closes a log, then the whole log is deleted. Before: exit 0.
func TestVerifyLogVanished(t *testing.T) {
	g := newGapStore(t)
	state := filepath.Join(t.TempDir(), "state")
	if r := g.verify(t, "--verifier-key", g.verifier, "--state", state); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}
	log := g.writeLog(t, 3)
	if err := os.RemoveAll(g.path("audit", log)); err != nil {
		t.Fatal(err)
	}
	wantFailed(t, "a log deleted as a whole", g.verify(t, "--verifier-key", g.verifier, "--state", state), audit.ClassMissing)
	// Its leases deleted too (they are not write-once): the registry entry
	// still fails it once the grace for a log being created has passed.
	if err := os.RemoveAll(g.path("audit", "_lease", log)); err != nil {
		t.Fatal(err)
	}
	if r := g.verify(t, "--verifier-key", g.verifier); r.code != exitOK {
		t.Fatalf("inside the grace a registered empty log may be one being created: %v", r)
	}
	wantFailed(t, "deleted with its leases, after the grace", g.verify(t, "--verifier-key", g.verifier, "--unsigned-grace", "1ns"), audit.ClassMissing)
}

// TestVerifyUnsignedLog: a log copied in with no checkpoints. Before:
// exit 0 with a warning, and query listed its records.
func TestVerifyUnsignedLog(t *testing.T) {
	g := newGapStore(t)
	fake := strings.Repeat("f", 32)
	if err := os.MkdirAll(g.path("audit", fake), 0o700); err != nil {
		t.Fatal(err)
	}
	g.forgeBatch(t, fake, 0)
	wantFailed(t, "a log copied in", g.verify(t, "--verifier-key", g.verifier), audit.ClassUnregistered)
	r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier)
	if r.code != exitOK || strings.Contains(r.stdout, "forged") || !strings.Contains(r.stderr, "warning: verification found") {
		t.Fatalf("query of verified records: %v", r)
	}
	// --unverified shows them, marked.
	r = runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--unverified", "--principal", "forged")
	if r.code != exitOK || strings.Count(r.stdout, `"verified":false`) != 2 {
		t.Fatalf("query --unverified: %v", r)
	}
	// Stats count only verified redemptions.
	r = runCLI(t, nil, "audit", "stats", "--store", g.dir, "--verifier-key", g.verifier)
	if r.code != exitOK || !strings.Contains(r.stdout, `"total":{"grants":0,"redemptions":5,"refusals":0,"documents":1}`) {
		t.Fatalf("stats: %v", r)
	}
}

// TestVerifyKeyPinned: checkpoints re-signed with an attacker's key and
// system/audit-verifier replaced. Before: exit 0 under --state.
func TestVerifyKeyPinned(t *testing.T) {
	g := newGapStore(t)
	state := filepath.Join(t.TempDir(), "state")
	// The key from the store, pinned on first use.
	if r := g.verify(t, "--state", state); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}
	evilS, evilV, err := audit.GenerateKey("idvault-audit-gaps")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(evilS)
	if err != nil {
		t.Fatal(err)
	}
	resign := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text, _, ok := strings.Cut(string(b), "\n\n")
		if !ok {
			t.Fatalf("%s is not a note", path)
		}
		msg, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, msg, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{g.path("audit", g.logs[0], "checkpoints"), g.path("audit", "_registry"), g.path("audit", "_lease", g.logs[0])} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			resign(filepath.Join(dir, e.Name()))
		}
	}
	if err := os.WriteFile(g.path("system", "audit-verifier"), []byte(evilV+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Consistent with the replaced key, so only the state can tell.
	if r := g.verify(t); r.code != exitOK {
		t.Fatalf("re-signed store without state: %v", r)
	}
	wantFailed(t, "re-signed with another key", g.verify(t, "--state", state), "")
	if r := g.verify(t, "--state", state); !strings.Contains(r.stdout, "verifier key differs") {
		t.Fatalf("no reason given: %v", r)
	}
}

// TestVerifyWitness: records erased with their checkpoints after the
// heads were printed: nothing in the store shows it, the witness does.
func TestVerifyWitness(t *testing.T) {
	g := newGapStore(t)
	ctx := context.Background()
	a, err := audit.NewAppender(ctx, g.st, g.signer, audit.AppenderOptions{CheckpointEvery: time.Hour, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a.LogID() != g.logs[0] {
		t.Fatal("closed log not continued")
	}
	for range 4 {
		if _, err := a.Append(ctx, audit.Record{Event: audit.EventGrant, Outcome: audit.OutcomeOK, Principal: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	witness := filepath.Join(t.TempDir(), "heads")
	r := runCLI(t, nil, "audit", "checkpoint", "--store", g.dir, "--verifier-key", g.verifier, "--out", witness)
	if r.code != exitOK {
		t.Fatalf("checkpoint: %v", r)
	}
	b, _ := os.ReadFile(witness)
	if !strings.HasPrefix(string(b), "idvault audit checkpoint v1\n"+g.logs[0]+"\n9\n") || !strings.Contains(string(b), "\n\n— idvault-audit-gaps ") {
		t.Fatalf("witness file:\n%s", b)
	}
	a.Close(ctx) // final checkpoint at 9
	// Erase the last 4 records and every checkpoint above 5.
	dir := g.path("audit", g.logs[0])
	for i := 5; i < 9; i++ {
		os.Remove(filepath.Join(dir, "0000000000000000000"+itoa(i)))
	}
	for _, name := range []string{"00000000000000000005-reopen", "00000000000000000009", "00000000000000000009-final"} {
		os.Remove(filepath.Join(dir, "checkpoints", name))
	}
	// The log's lease, released at 9, still vouches for the records.
	wantFailed(t, "records erased, lease left", g.verify(t, "--verifier-key", g.verifier), audit.ClassTruncated)
	if err := os.RemoveAll(g.path("audit", "_lease", g.logs[0])); err != nil {
		t.Fatal(err)
	}
	if r := g.verify(t, "--verifier-key", g.verifier); r.code != exitOK {
		t.Fatalf("with the lease erased too, the erasure is invisible from inside the store, expected; got %v", r)
	}
	wantFailed(t, "records erased after the witness", g.verify(t, "--verifier-key", g.verifier, "--witness", witness), audit.ClassRollback)
	// A witness file that does not verify is a failure, not a pass.
	os.WriteFile(witness, bytes.Replace(b, []byte("\n9\n"), []byte("\n8\n"), 1), 0o600)
	wantFailed(t, "forged witness", g.verify(t, "--verifier-key", g.verifier, "--witness", witness), "")
}

func TestVerifyJSON(t *testing.T) {
	g := newGapStore(t)
	r := g.verify(t, "--verifier-key", g.verifier, "--format", "json")
	var v verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != exitOK || !v.OK || len(v.Logs) != 1 || v.Logs[0].VerifiedSize != 5 || !v.Logs[0].Final || v.Logs[0].Registered == "" {
		t.Fatalf("verify --format json: %v (%v)", r, err)
	}
	os.Remove(g.path("audit", g.logs[0], "00000000000000000000"))
	r = g.verify(t, "--verifier-key", g.verifier, "--format", "json")
	v = verifyJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != exitFailed || v.OK || v.Logs[0].Problem == nil || v.Logs[0].Problem.Class != string(audit.ClassGap) {
		t.Fatalf("verify --format json of a tampered log: %v (%v)", r, err)
	}
}

func TestQueryEventUnknown(t *testing.T) {
	g := newGapStore(t)
	r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--event", "redeemed")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--event must be one of") {
		t.Fatalf("unknown event: %v", r)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer = testenv.Buffer

// TestQueryFollow: a collector reads everything, remembers the cursor,
// and follows: records sealed while it runs arrive, none twice, none
// unsealed.
func TestQueryFollow(t *testing.T) {
	g := newGapStore(t)
	ctx := context.Background()
	r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier)
	if r.code != exitOK || strings.Count(r.stdout, "\n") != 5 {
		t.Fatalf("first read: %v", r)
	}
	cur := ""
	for _, line := range strings.Split(r.stderr, "\n") {
		if c, ok := strings.CutPrefix(line, "cursor: "); ok {
			cur = c
		}
	}
	if _, err := parseCursor(cur); err != nil || cur == cursorPrefix {
		t.Fatalf("cursor %q: %v", cur, err)
	}
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--follow", "--after", cur,
			"--poll", "20ms", "--timeout", "3s", "--format", "ocsf"}, &out, &errb, func(string) string { return "" })
	}()
	a, err := audit.NewAppender(ctx, g.st, g.signer, audit.AppenderOptions{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	for i := range 3 {
		if _, err := a.Append(ctx, audit.Record{Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "token-replayed", Principal: "late-" + itoa(i), RemoteAddr: "192.0.2.9:4444"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // unsealed: must not be streamed
	if strings.Contains(out.String(), "late-") {
		t.Fatalf("an unsealed record was streamed:\n%s", out.String())
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for strings.Count(out.String(), "late-") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code := <-done; code != exitOK {
		t.Fatalf("follow: exit %d\n%s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("follow after the cursor printed %d events, want the 3 new ones:\n%s", len(lines), out.String())
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"class_uid": 6003.0, "activity_id": 2.0, "type_uid": 600302.0, "status_id": 2.0, "status_detail": "token-replayed", "severity_id": 2.0}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("OCSF %s = %v, want %v", k, e[k], v)
		}
	}
	if e["actor"].(map[string]any)["user"].(map[string]any)["uid"] != "late-0" || e["src_endpoint"].(map[string]any)["ip"] != "192.0.2.9" {
		t.Errorf("OCSF actor or endpoint wrong: %s", lines[0])
	}
}

func TestOCSFMapping(t *testing.T) {
	for _, tt := range []struct {
		r                            audit.Record
		class, activity, sev, status int
	}{
		{audit.Record{Event: audit.EventPut, Outcome: audit.OutcomeOK}, 6003, 1, 1, 1},
		{audit.Record{Event: audit.EventRedeem, Outcome: audit.OutcomeOK}, 6003, 2, 1, 1},
		{audit.Record{Event: audit.EventExpire, Outcome: audit.OutcomeOK, Object: obj1}, 6003, 4, 1, 1},
		{audit.Record{Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: "bulk-access"}, 6003, 99, 4, 1},
		{audit.Record{Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: "canary-touched"}, 6003, 99, 5, 1},
		{audit.Record{Event: audit.EventGrant, Outcome: audit.OutcomeRefused, Reason: "quota-exceeded"}, 6003, 1, 2, 2},
	} {
		e := toOCSF(tt.r, true)
		if e.ClassUID != tt.class || e.ActivityID != tt.activity || e.SeverityID != tt.sev || e.StatusID != tt.status || e.TypeUID != tt.class*100+tt.activity || e.StatusDetail != tt.r.Reason {
			t.Errorf("%s %s %s: %+v", tt.r.Event, tt.r.Outcome, tt.r.Reason, e)
		}
	}
	if e := toOCSF(audit.Record{Event: audit.EventRedeem, Outcome: audit.OutcomeOK}, false); len(e.Metadata.Labels) != 1 {
		t.Error("an unverified record is not labelled")
	}
}

func FuzzParseCursor(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParseCursor.
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("%q parses but prints as %q", s, c.String())
		}
	})
}
