package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/audit"
)

// errState marks a --state file that cannot be read or parsed.
var errState = errors.New("invalid state file")

// stateVersion is the version of the state file format written; version
// 1 (no key, no final sizes) is still read.
const stateVersion = 2

// maxStateSize bounds a state file: a few hundred bytes per log.
const maxStateSize = 16 << 20

// state is what `audit verify --state` remembers between runs: the
// verifier key (pinned on first use), and per log the latest verified tree
// and the size of its latest final checkpoint. Passed back to audit.Verify
// (Trusted, Finals), it catches a log rolled back, replaced or deleted
// wholesale, a closed log reopened by deleting its final checkpoint, and
// checkpoints re-signed with another key.
//
// On disk it is JSON:
//
//	{"version":2,"verifier_key":"<name+hash+key>","logs":{
//	  "<log ID>":{"size":123,"hash":"<base64 tree hash>","final":120}}}
//
// "final" is 0 (or absent) for a log never seen closed.
type state struct {
	Key    string // the verifier key the state was built with ("" in a version 1 file or a new state)
	Logs   map[string]tlog.Tree
	Finals map[string]int64
}

type stateFile struct {
	Version int                  `json:"version"`
	Key     string               `json:"verifier_key"`
	Logs    map[string]stateTree `json:"logs"`
}

type stateTree struct {
	Size  int64  `json:"size"`
	Hash  string `json:"hash"`
	Final int64  `json:"final"`
}

func newState() state {
	return state{Logs: map[string]tlog.Tree{}, Finals: map[string]int64{}}
}

// parseState decodes a state file strictly: unknown fields, an unknown
// version, an invalid key, invalid log IDs, sizes below 1, a final size
// above the verified size, non-canonical hashes and trailing data are
// refused with errState.
func parseState(b []byte) (state, error) {
	if len(b) > maxStateSize {
		return state{}, fmt.Errorf("%w: larger than %d bytes", errState, maxStateSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return state{}, fmt.Errorf("%w: not JSON of the expected shape", errState)
	}
	if _, err := dec.Token(); err != io.EOF {
		return state{}, fmt.Errorf("%w: trailing data", errState)
	}
	if f.Version != 1 && f.Version != stateVersion {
		return state{}, fmt.Errorf("%w: version %d, want %d", errState, f.Version, stateVersion)
	}
	s := newState()
	if f.Version == 1 && f.Key != "" {
		return state{}, fmt.Errorf("%w: a version 1 file has no verifier key", errState)
	}
	if f.Key != "" {
		k, err := checkVerifierKey(f.Key)
		if err != nil || k != f.Key {
			return state{}, fmt.Errorf("%w: malformed verifier key", errState)
		}
		s.Key = f.Key
	}
	for id, t := range f.Logs {
		if !audit.ValidLogID(id) {
			return state{}, fmt.Errorf("%w: invalid log ID", errState)
		}
		if t.Size < 1 {
			return state{}, fmt.Errorf("%w: log %s: size must be at least 1", errState, id)
		}
		if t.Final < 0 || t.Final > t.Size || f.Version == 1 && t.Final != 0 {
			return state{}, fmt.Errorf("%w: log %s: final size out of range", errState, id)
		}
		h, err := tlog.ParseHash(t.Hash)
		if err != nil || h.String() != t.Hash {
			return state{}, fmt.Errorf("%w: log %s: malformed hash", errState, id)
		}
		s.Logs[id] = tlog.Tree{N: t.Size, Hash: h}
		if t.Final > 0 {
			s.Finals[id] = t.Final
		}
	}
	return s, nil
}

// marshal encodes s canonically (sorted keys, one log per line).
func (s state) marshal() []byte {
	ids := make([]string, 0, len(s.Logs))
	for id := range s.Logs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b bytes.Buffer
	// Keys, log IDs and base64 hashes need no JSON escaping.
	fmt.Fprintf(&b, "{\"version\":%d,\"verifier_key\":%q,\"logs\":{", stateVersion, s.Key)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		t := s.Logs[id]
		fmt.Fprintf(&b, "\n  %q:{\"size\":%d,\"hash\":%q,\"final\":%d}", id, t.N, t.Hash.String(), s.Finals[id])
	}
	if len(ids) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("}}\n")
	return b.Bytes()
}

// readState reads a state file; a missing file is an empty state (the
// first run), reported by first.
func readState(path string) (s state, first bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), true, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("%w: %v", errState, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return state{}, false, fmt.Errorf("%w: %v", errState, err)
	}
	s, err = parseState(b)
	return s, false, err
}

// merge returns s updated with the verified trees and final sizes of
// rep, never moving a log backwards, and with key pinned.
func (s state) merge(rep *audit.Report, key string) state {
	out := newState()
	out.Key = key
	for id, t := range s.Logs {
		out.Logs[id] = t
	}
	for id, n := range s.Finals {
		out.Finals[id] = n
	}
	for _, l := range rep.Logs {
		if l.Verified.N < 1 || !audit.ValidLogID(l.Log) {
			continue
		}
		if old, ok := out.Logs[l.Log]; !ok || l.Verified.N >= old.N {
			out.Logs[l.Log] = l.Verified
		}
		if l.FinalSize > out.Finals[l.Log] && l.FinalSize <= out.Logs[l.Log].N {
			out.Finals[l.Log] = l.FinalSize
		}
	}
	return out
}

// writeState replaces the file at path atomically (temporary file, fsync,
// rename, fsync of the directory), so that a crash leaves the old state or
// the new one, never a torn file.
func writeState(path string, s state) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".idvault-state-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(s.marshal()); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
