package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// TestVerifyWitnessEmptyOrGarbled: a witness file that vouches for
// nothing fails; it passed without a word before.
func TestVerifyWitnessEmptyOrGarbled(t *testing.T) {
	g := newGapStore(t)
	dir := t.TempDir()
	heads := filepath.Join(dir, "heads")
	if r := runCLI(t, nil, "audit", "checkpoint", "--store", g.dir, "--verifier-key", g.verifier, "--out", heads); r.code != exitOK {
		t.Fatalf("checkpoint: %v", r)
	}
	good, _ := os.ReadFile(heads)
	if r := g.verify(t, "--verifier-key", g.verifier, "--witness", heads); r.code != exitOK {
		t.Fatalf("a good witness: %v", r)
	}
	for name, content := range map[string][]byte{
		"empty":        nil,
		"blank":        []byte("\n\n"),
		"garbage":      []byte("not a note\n"),
		"truncated":    good[:len(good)/2],
		"extra text":   append(bytes.Clone(good), "junk\n"...),
		"binary noise": {0xff, 0x00, '\n'},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			r := g.verify(t, "--verifier-key", g.verifier, "--witness", p)
			if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED: witness file") {
				t.Fatalf("want exit 1 naming the witness file, got %v", r)
			}
		})
	}
}

// makeStateKey runs idvault audit state-key and returns the key file.
func makeStateKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state.key")
	r := runCLI(t, nil, "audit", "state-key", "--out", p)
	if r.code != exitOK {
		t.Fatalf("state-key: %v", r)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	b, _ := os.ReadFile(p)
	if _, err := parseStateKey(b); err != nil {
		t.Fatalf("the key file does not parse: %v", err)
	}
	if strings.Contains(r.stdout+r.stderr, strings.Split(string(b), "\n")[1]) {
		t.Fatal("state-key printed the key")
	}
	if r := runCLI(t, nil, "audit", "state-key", "--out", p); r.code != exitUsage {
		t.Fatalf("state-key over an existing file: want exit 2, got %v", r)
	}
	if b2, _ := os.ReadFile(p); !bytes.Equal(b, b2) {
		t.Fatal("state-key overwrote a key")
	}
	return p
}

// TestVerifyStateAuthenticated: with a state key, the state file carries a
// MAC; removing a log's entry, rewriting it as version 1 or 2 (no key pin,
// no MAC), dropping the MAC, using another key, or deleting the file is an
// error instead of silently dropping protection. Before: every one of
// these was accepted.
func TestVerifyStateAuthenticated(t *testing.T) {
	g := newGapStore(t)
	g.writeLog(t, 3)
	keyFile := makeStateKey(t)
	statePath := filepath.Join(t.TempDir(), "state")
	verify := func(extra ...string) result {
		return g.verify(t, append([]string{"--verifier-key", g.verifier, "--state", statePath, "--state-key-file", keyFile}, extra...)...)
	}
	wantStateError := func(what string, r result) {
		t.Helper()
		if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "state file") {
			t.Fatalf("%s: want exit 2 about the state file before any verdict, got %v", what, r)
		}
	}
	// The first run needs --init-state: a missing file is otherwise a
	// deleted one.
	wantStateError("no state file yet", verify())
	if r := verify("--init-state"); r.code != exitOK {
		t.Fatalf("first run: %v", r)
	}
	good, _ := os.ReadFile(statePath)
	var sf stateFile
	if err := json.Unmarshal(good, &sf); err != nil || sf.Version != 3 || sf.MAC == nil || !strings.HasPrefix(*sf.MAC, stateMACPrefix) || len(sf.Logs) != 2 {
		t.Fatalf("state file:\n%s", good)
	}
	if r := verify(); r.code != exitOK || strings.Contains(r.stderr, "not authenticated") {
		t.Fatalf("second run: %v", r)
	}
	// The same from the environment.
	r := g.verify(t, "--verifier-key", g.verifier, "--state", statePath)
	if r.code != exitUsage || !strings.Contains(r.stderr, "authenticated") {
		t.Fatalf("a keyed state file without its key: want exit 2, got %v", r)
	}
	r = runCLI(t, map[string]string{"IDVAULT_STATE_KEY_FILE": keyFile}, "audit", "verify", "--store", g.dir, "--verifier-key", g.verifier, "--state", statePath)
	if r.code != exitOK {
		t.Fatalf("key from IDVAULT_STATE_KEY_FILE: %v", r)
	}

	s, err := parseState(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropped := s.merge(&audit.Report{}, s.Key)
	delete(dropped.Logs, g.logs[1])
	delete(dropped.Finals, g.logs[1])
	v1 := `{"version":1,"logs":{}}`
	v2 := strings.Replace(string(s.marshal(nil)), `"version":3`, `"version":2`, 1)
	v2 = v2[:strings.Index(v2, `"state_chain"`)] + v2[strings.Index(v2, `"logs"`):strings.LastIndex(v2, `,"mac"`)] + "}\n"
	if _, err := parseState([]byte(v2), nil); err != nil {
		t.Fatalf("setup: version 2 file: %v\n%s", err, v2)
	}
	other := make(stateKey, stateKeyLen)
	for name, content := range map[string][]byte{
		"a log's entry removed, MAC kept": bytes.Replace(dropped.marshal(nil), []byte(`"mac":""`), []byte(`"mac":"`+*sf.MAC+`"`), 1),
		"a log's entry removed, no MAC":   dropped.marshal(nil),
		"rewritten as version 1":          []byte(v1),
		"rewritten as version 2":          []byte(v2),
		"MAC dropped":                     s.marshal(nil),
		"MAC of another key":              s.marshal(other),
		"MAC flipped":                     bytes.Replace(good, []byte(`:"hmac-sha256:`), []byte(`:"hmac-sha256:A`), 1),
		"not canonical":                   bytes.Replace(good, []byte(`{"version":3,`), []byte(`{ "version":3,`), 1),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(statePath, content, 0o600); err != nil {
				t.Fatal(err)
			}
			wantStateError(name, verify())
			if b, _ := os.ReadFile(statePath); !bytes.Equal(b, content) {
				t.Fatal("a rejected state file was overwritten")
			}
		})
	}
	os.WriteFile(statePath, good, 0o600)
	if r := verify(); r.code != exitOK {
		t.Fatalf("good file back: %v", r)
	}
	// Deleted: the same as the first run, refused without --init-state.
	os.Remove(statePath)
	wantStateError("state file deleted", verify())
	// A state key file that is not one.
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("idvault verify state key v1\nshort\n"), 0o600)
	wantStateError("bad key file", g.verify(t, "--verifier-key", g.verifier, "--state", statePath, "--state-key-file", bad, "--init-state"))
	if r := g.verify(t, "--verifier-key", g.verifier, "--state-key-file", keyFile); r.code != exitUsage {
		t.Fatalf("--state-key-file without --state: want exit 2, got %v", r)
	}
}

// TestVerifyStateUnauthenticatedWarns: without a key, verify says what an
// unauthenticated state file cannot protect, and still reads version 1
// and 2 files.
func TestVerifyStateUnauthenticatedWarns(t *testing.T) {
	g := newGapStore(t)
	statePath := filepath.Join(t.TempDir(), "state")
	for _, content := range []string{"", `{"version":1,"logs":{}}`, `{"version":2,"verifier_key":"","logs":{}}`} {
		if content != "" {
			os.WriteFile(statePath, []byte(content), 0o600)
		}
		r := g.verify(t, "--verifier-key", g.verifier, "--state", statePath)
		if r.code != exitOK || !strings.Contains(r.stderr, "warning: the state file is not authenticated") || !strings.Contains(r.stderr, "remove a log") {
			t.Fatalf("state %q: %v", content, r)
		}
		b, _ := os.ReadFile(statePath)
		if s, err := parseState(b, nil); err != nil || s.keyed || !bytes.Contains(b, []byte(`"version":3`)) {
			t.Fatalf("written: %v\n%s", err, b)
		}
	}
}

// TestVerifyStateChain: the state chain's head is printed, given in JSON,
// remembered by --state, and a chain cut back below it fails.
func TestVerifyStateChain(t *testing.T) {
	g := newGapStore(t)
	ctx := context.Background()
	ss, err := audit.NewStateSigner(g.signer)
	if err != nil {
		t.Fatal(err)
	}
	r0, err := audit.NewStateReader(g.st, g.verifier)
	if err != nil {
		t.Fatal(err)
	}
	obj := strings.Repeat("ab", 16)
	for i, kind := range []audit.StateKind{audit.StateHold, audit.StateRelease, audit.StateHold} {
		e := r0.MakeStateEntry(base.Add(time.Duration(i)*time.Minute), kind, obj)
		b, err := ss.Sign(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.st.Put(ctx, audit.StateKey(e.Seq), bytes.NewReader(b), int64(len(b)), store.PutOptions{IfAbsent: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := r0.Accept(b); err != nil {
			t.Fatal(err)
		}
	}
	statePath := filepath.Join(t.TempDir(), "state")
	r := g.verify(t, "--verifier-key", g.verifier, "--state", statePath)
	if r.code != exitOK || !strings.Contains(r.stdout, "\nstate chain: 3 entries, head "+r0.Head().String()+"\n") {
		t.Fatalf("verify: %v", r)
	}
	b, _ := os.ReadFile(statePath)
	if s, err := parseState(b, nil); err != nil || s.Chain.Length != 3 || s.Chain.Hash != r0.Head() {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	r = g.verify(t, "--verifier-key", g.verifier, "--format", "json")
	var v verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.State.Length != 3 || v.State.Head != r0.Head().String() || v.State.Problem != nil {
		t.Fatalf("json: %v (%v)", r, err)
	}
	heads := filepath.Join(t.TempDir(), "heads")
	r = runCLI(t, nil, "audit", "checkpoint", "--store", g.dir, "--verifier-key", g.verifier, "--out", heads)
	if wb, _ := os.ReadFile(heads); r.code != exitOK || !strings.Contains(r.stderr, "state chain's head (3 entries)") || !bytes.Contains(wb, []byte("\nidvault state v1\n3\n")) {
		t.Fatalf("checkpoint: %v", r)
	}
	// The release rolled back: the chain alone looks whole, the state
	// file and the witness remember three entries.
	if err := g.st.Delete(ctx, audit.StateKey(3)); err != nil {
		t.Fatal(err)
	}
	if err := g.st.Delete(ctx, audit.StateKey(2)); err != nil {
		t.Fatal(err)
	}
	if r := g.verify(t, "--verifier-key", g.verifier); r.code != exitOK {
		t.Fatalf("without state (no witness record in this store): %v", r)
	}
	wantFailed(t, "state chain cut back, witness", g.verify(t, "--verifier-key", g.verifier, "--witness", heads), audit.ClassRollback)
	r = g.verify(t, "--verifier-key", g.verifier, "--state", statePath)
	wantFailed(t, "state chain cut back", r, audit.ClassRollback)
	if !strings.Contains(r.stdout, "FAILED: state chain: rollback") {
		t.Fatalf("the failure does not name the state chain: %v", r)
	}
	r = g.verify(t, "--verifier-key", g.verifier, "--state", statePath, "--format", "json")
	v = verifyJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.OK || v.State.Problem == nil || v.State.Problem.Class != string(audit.ClassRollback) {
		t.Fatalf("json of a cut chain: %v (%v)", r, err)
	}
}

func TestStateKeyRoundTrip(t *testing.T) {
	k := make(stateKey, stateKeyLen)
	for i := range k {
		k[i] = byte(i)
	}
	got, err := parseStateKey(formatStateKey(k))
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("round trip: %v", err)
	}
	if s := strings.ToLower(got.String() + " " + got.GoString()); !strings.Contains(s, "redacted") {
		t.Fatalf("a state key prints as %q", s)
	}
	good := string(formatStateKey(k))
	for _, bad := range []string{"", good[:len(good)-1], good + "\n", "x" + good, strings.Replace(good, "v1", "v2", 1),
		stateKeyHeader + "\n" + strings.Repeat("A", 44) + "\n", stateKeyHeader + "\n" + strings.Repeat("A", 40) + "\n"} {
		if _, err := parseStateKey([]byte(bad)); !errors.Is(err, errState) {
			t.Errorf("parseStateKey(%q) = %v", bad, err)
		}
	}
}

func TestStateMAC(t *testing.T) {
	k := stateKey(bytes.Repeat([]byte{7}, stateKeyLen))
	s := state{Key: testVerifierKey, Logs: map[string]tlog.Tree{"a": {N: 7, Hash: hashA}}, Finals: map[string]int64{"a": 5}}
	b := s.marshal(k)
	got, err := parseState(b, k)
	if err != nil || !got.keyed || got.Logs["a"] != s.Logs["a"] {
		t.Fatalf("keyed round trip: %+v, %v", got, err)
	}
	if _, err := parseState(b, bytes.Repeat([]byte{8}, stateKeyLen)); !errors.Is(err, errStateAuth) {
		t.Fatalf("another key: %v", err)
	}
	// Every byte of a keyed file matters.
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, err := parseState(c, k); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
}

func FuzzParseStateKey(f *testing.F) {
	f.Add(formatStateKey(make(stateKey, stateKeyLen)))
	f.Add([]byte(stateKeyHeader + "\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseStateKey(b)
		if refused(t, err, errState) {
			return
		}
		if !bytes.Equal(formatStateKey(k), b) {
			t.Fatalf("round trip changed the key file")
		}
	})
}

// TestCheckpointBrokenChain: audit checkpoint refuses to hand a witness
// the head of a broken state chain.
func TestCheckpointBrokenChain(t *testing.T) {
	g := newGapStore(t)
	ss, _ := audit.NewStateSigner(g.signer)
	b, err := ss.Sign(audit.StateEntry{Seq: 2, Prev: audit.HashState([]byte("x")), Time: base, Kind: audit.StateHold, Target: strings.Repeat("ab", 16)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.st.Put(context.Background(), audit.StateKey(2), bytes.NewReader(b), int64(len(b)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "audit", "checkpoint", "--store", g.dir, "--verifier-key", g.verifier)
	if r.code != exitFailed || r.stdout != "" || !strings.Contains(r.stderr, "state chain broken") {
		t.Fatalf("want exit 1 and no heads, got %v", r)
	}
	wantFailed(t, "broken chain", g.verify(t, "--verifier-key", g.verifier), audit.ClassStateBroken)
}
