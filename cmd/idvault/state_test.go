package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/audit"
)

var (
	hashA = tlog.RecordHash([]byte("a"))
	hashB = tlog.RecordHash([]byte("b"))
)

func TestStateRoundTrip(t *testing.T) {
	for _, s := range []state{
		{Logs: map[string]tlog.Tree{}},
		{Logs: map[string]tlog.Tree{"log-1": {N: 1, Hash: hashA}}},
		{Logs: map[string]tlog.Tree{"b": {N: 1 << 40, Hash: hashB}, "a": {N: 7, Hash: hashA}}},
		{Key: testVerifierKey, Logs: map[string]tlog.Tree{"a": {N: 7, Hash: hashA}}, Finals: map[string]int64{"a": 5}},
	} {
		b := s.marshal(nil)
		got, err := parseState(b, nil)
		if err != nil {
			t.Fatalf("parse of %s: %v", b, err)
		}
		if len(got.Logs) != len(s.Logs) || got.Key != s.Key || len(got.Finals) != len(s.Finals) || got.Finals["a"] != s.Finals["a"] {
			t.Fatalf("got %v, want %v", got, s)
		}
		for id, tr := range s.Logs {
			if got.Logs[id] != tr {
				t.Fatalf("log %s: got %v, want %v", id, got.Logs[id], tr)
			}
		}
		if !bytes.Equal(got.marshal(nil), b) {
			t.Fatalf("marshal is not canonical:\n%s\n%s", b, got.marshal(nil))
		}
	}
}

func TestParseStateRejects(t *testing.T) {
	h := hashA.String()
	for _, in := range []string{
		``,
		`{`,
		`null`,
		`[]`,
		`{"logs":{}}`,
		`{"version":4,"logs":{}}`,
		`{"version":3,"logs":{}}`,
		`{"version":2,"verifier_key":"","state_chain":{"length":0,"head":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"logs":{}}`,
		`{"version":2,"verifier_key":"","logs":{},"mac":""}`,
		`{"version":1,"verifier_key":"` + testVerifierKey + `","logs":{}}`,
		`{"version":2,"verifier_key":"PRIVATE+KEY+x","logs":{}}`,
		`{"version":2,"verifier_key":"not a key","logs":{}}`,
		`{"version":2,"logs":{"a":{"size":1,"hash":"` + h + `","final":2}}}`,
		`{"version":2,"logs":{"a":{"size":1,"hash":"` + h + `","final":-1}}}`,
		`{"version":1,"logs":{"a":{"size":1,"hash":"` + h + `","final":1}}}`,
		`{"version":1,"logs":{},"extra":true}`,
		`{"version":1,"logs":{"a":{"size":1,"hash":"` + h + `","x":1}}}`,
		`{"version":1,"logs":{"a":{"size":0,"hash":"` + h + `"}}}`,
		`{"version":1,"logs":{"a":{"size":-1,"hash":"` + h + `"}}}`,
		`{"version":1,"logs":{"a":{"size":1.5,"hash":"` + h + `"}}}`,
		`{"version":1,"logs":{"a":{"size":1,"hash":"short"}}}`,
		`{"version":1,"logs":{"a":{"size":1}}}`,
		`{"version":1,"logs":{"../x":{"size":1,"hash":"` + h + `"}}}`,
		`{"version":1,"logs":{".hidden":{"size":1,"hash":"` + h + `"}}}`,
		`{"version":1,"logs":{}} {}`,
		`{"version":1,"logs":{}} x`,
	} {
		if _, err := parseState([]byte(in), nil); !errors.Is(err, errState) {
			t.Errorf("%s: want errState, got %v", in, err)
		}
	}
	if _, err := parseState(bytes.Repeat([]byte(" "), maxStateSize+1), nil); !errors.Is(err, errState) {
		t.Errorf("oversized: want errState, got %v", err)
	}
}

func TestStateMerge(t *testing.T) {
	old := state{Logs: map[string]tlog.Tree{"a": {N: 5, Hash: hashA}, "gone": {N: 2, Hash: hashB}}}
	rep := &audit.Report{Logs: []audit.LogReport{
		{Log: "a", Verified: tlog.Tree{N: 9, Hash: hashB}},
		{Log: "b", Verified: tlog.Tree{N: 3, Hash: hashA}},
		{Log: "c"}, // nothing verified yet: not remembered
	}}
	got := old.merge(rep, testVerifierKey)
	if got.Key != testVerifierKey {
		t.Errorf("key not pinned: %q", got.Key)
	}
	want := map[string]tlog.Tree{"a": {N: 9, Hash: hashB}, "b": {N: 3, Hash: hashA}, "gone": {N: 2, Hash: hashB}}
	if len(got.Logs) != len(want) {
		t.Fatalf("got %v", got.Logs)
	}
	for id, tr := range want {
		if got.Logs[id] != tr {
			t.Errorf("%s: got %v, want %v", id, got.Logs[id], tr)
		}
	}
	// Never backwards.
	back := got.merge(&audit.Report{Logs: []audit.LogReport{{Log: "a", Verified: tlog.Tree{N: 4, Hash: hashA}}}}, testVerifierKey)
	if back.Logs["a"] != want["a"] {
		t.Errorf("merge moved a log backwards: %v", back.Logs["a"])
	}
	if old.Logs["a"].N != 5 {
		t.Error("merge modified its receiver")
	}
}

func TestWriteStateAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	s := state{Logs: map[string]tlog.Tree{"a": {N: 1, Hash: hashA}}}
	if err := writeState(p, s, nil); err != nil {
		t.Fatal(err)
	}
	got, first, err := readState(p, nil)
	if err != nil || first || got.Logs["a"] != s.Logs["a"] {
		t.Fatalf("readState = %v, %v, %v", got, first, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state file mode %v is readable by others", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".idvault-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	if _, first, err := readState(filepath.Join(dir, "missing"), nil); err != nil || !first {
		t.Fatalf("missing state: first=%v err=%v", first, err)
	}
	if err := writeState(filepath.Join(dir, "no", "such", "dir"), s, nil); err == nil {
		t.Fatal("writeState into a missing directory succeeded")
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"logs":{}}`))
	f.Add(state{Logs: map[string]tlog.Tree{"a": {N: 3, Hash: hashA}, "b": {N: 1, Hash: hashB}}}.marshal(nil))
	f.Add([]byte(`{"version":1,"logs":{"a":{"size":1,"hash":"x"}}}`))
	f.Add([]byte(`{"version":1,"logs":null}`))
	f.Add(state{Key: testVerifierKey, Logs: map[string]tlog.Tree{"a": {N: 3, Hash: hashA}}, Finals: map[string]int64{"a": 3}}.marshal(nil))
	fuzzKey := stateKey(bytes.Repeat([]byte{7}, stateKeyLen))
	f.Add(state{Key: testVerifierKey, Logs: map[string]tlog.Tree{"a": {N: 3, Hash: hashA}}}.marshal(fuzzKey))
	f.Fuzz(func(t *testing.T, b []byte) {
		// With the key: whatever authenticates is exactly what the key
		// would have written.
		if s, err := parseState(b, fuzzKey); err == nil && s.keyed && !bytes.Equal(s.marshal(fuzzKey), b) {
			t.Fatalf("an authenticated state file is not the key's own encoding:\n%s", b)
		}
		s, err := parseState(b, nil)
		if refused(t, err, errState) {
			return
		}
		// Whatever parses re-encodes canonically to something that parses
		// to the same state.
		again, err := parseState(s.marshal(nil), nil)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", s.marshal(nil), err)
		}
		if len(again.Logs) != len(s.Logs) || again.Key != s.Key || len(again.Finals) != len(s.Finals) {
			t.Fatalf("round trip changed the state")
		}
		for id, n := range s.Finals {
			if again.Finals[id] != n || n < 1 || n > s.Logs[id].N {
				t.Fatalf("log %q: final %d vs %d", id, n, again.Finals[id])
			}
		}
		for id, tr := range s.Logs {
			if !audit.ValidLogID(id) || tr.N < 1 || again.Logs[id] != tr {
				t.Fatalf("log %q: %v vs %v", id, tr, again.Logs[id])
			}
		}
	})
}

// testVerifierKey is a well-formed verifier key that verifies nothing here.
const testVerifierKey = "idvault-test+4a5adc64+AaqGVWMaveWaCJjPSD6eXlRQTtwfZ3vlRlLb6FsBbEsH"
