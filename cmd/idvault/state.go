package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/audit"
)

// errState marks a --state file that cannot be read, parsed or
// authenticated, or a state key file that cannot be used.
var errState = errors.New("invalid state file")

// errStateAuth: a keyed state file whose MAC does not verify with the key
// given (rewritten by someone without the key, or another key).
var errStateAuth = errors.New("state file fails authentication")

// stateVersion is the version of the state file format written; versions
// 1 (no key, no final sizes) and 2 (no state chain, no MAC) are still read
// when no state key is configured.
const stateVersion = 3

// maxStateSize bounds a state file: a few hundred bytes per log.
const maxStateSize = 16 << 20

// state is what `audit verify --state` remembers between runs: the
// verifier key (pinned on first use), the head of the state chain, and per
// log the latest verified tree and the size of its latest final
// checkpoint. Passed back to audit.Verify (Trusted, Finals, State), it
// catches a log rolled back, replaced or deleted wholesale, a closed log
// reopened by deleting its final checkpoint, a state chain cut back or
// rewritten, and checkpoints re-signed with another key.
//
// On disk it is canonical JSON (version 3):
//
//	{"version":3,"verifier_key":"<name+hash+key>",
//	 "state_chain":{"length":5,"head":"<base64 SHA-256>"},"logs":{
//	  "<log ID>":{"size":123,"hash":"<base64 tree hash>","final":120}},
//	 "mac":"hmac-sha256:<base64>"}
//
// "final" is 0 for a log never seen closed. "mac" is "" in a file written
// without a state key; otherwise the HMAC-SHA256, with the state key, of
// "idvault verify state v3\n" followed by the file's bytes with "mac":"".
// Only the canonical encoding of a version 3 file is accepted, so that the
// MAC covers one well-defined byte string.
type state struct {
	Key    string // the verifier key the state was built with ("" in a version 1 file or a new state)
	Chain  audit.StateHead
	Logs   map[string]tlog.Tree
	Finals map[string]int64
	keyed  bool // read from a file carrying a valid MAC
}

type stateFile struct {
	Version int                  `json:"version"`
	Key     string               `json:"verifier_key"`
	Chain   *stateChain          `json:"state_chain,omitempty"`
	Logs    map[string]stateTree `json:"logs"`
	MAC     *string              `json:"mac,omitempty"`
}

type stateChain struct {
	Length int64  `json:"length"`
	Head   string `json:"head"`
}

type stateTree struct {
	Size  int64  `json:"size"`
	Hash  string `json:"hash"`
	Final int64  `json:"final"`
}

func newState() state {
	return state{Logs: map[string]tlog.Tree{}, Finals: map[string]int64{}}
}

// stateMACContext starts every MAC input: a MAC for this file can never be
// one for anything else the key might sign.
const stateMACContext = "idvault verify state v3\n"

// stateMACPrefix names the MAC algorithm in the file.
const stateMACPrefix = "hmac-sha256:"

// parseState decodes a state file strictly: unknown fields, an unknown
// version, an invalid key, invalid log IDs, sizes below 1, a final size
// above the verified size, non-canonical hashes, trailing data and (in
// version 3) any encoding other than the canonical one are refused with
// errState. A MAC is checked with key when the file has one and key is
// given (errStateAuth when it fails); whether the file is keyed and
// whether a key is required is the caller's decision (state.keyed).
func parseState(b []byte, key []byte) (state, error) {
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
	if f.Version < 1 || f.Version > stateVersion {
		return state{}, fmt.Errorf("%w: version %d, want %d", errState, f.Version, stateVersion)
	}
	s := newState()
	if f.Version == 1 && f.Key != "" {
		return state{}, fmt.Errorf("%w: a version 1 file has no verifier key", errState)
	}
	if f.Version < 3 && (f.Chain != nil || f.MAC != nil) {
		return state{}, fmt.Errorf("%w: a version %d file has no state chain and no MAC", errState, f.Version)
	}
	if f.Version == 3 && (f.Chain == nil || f.MAC == nil) {
		return state{}, fmt.Errorf("%w: a version 3 file has a state chain and a MAC field", errState)
	}
	if f.Key != "" {
		k, err := checkVerifierKey(f.Key)
		if err != nil || k != f.Key {
			return state{}, fmt.Errorf("%w: malformed verifier key", errState)
		}
		s.Key = f.Key
	}
	if f.Chain != nil {
		h, err := base64.StdEncoding.Strict().DecodeString(f.Chain.Head)
		if err != nil || len(h) != len(s.Chain.Hash) || base64.StdEncoding.EncodeToString(h) != f.Chain.Head || f.Chain.Length < 0 {
			return state{}, fmt.Errorf("%w: malformed state chain head", errState)
		}
		copy(s.Chain.Hash[:], h)
		s.Chain.Length = f.Chain.Length
		if (s.Chain.Length == 0) != (s.Chain.Hash == audit.StateHash{}) {
			return state{}, fmt.Errorf("%w: malformed state chain head", errState)
		}
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
	if f.Version < 3 {
		return s, nil
	}
	if !bytes.Equal(s.encode(*f.MAC), b) {
		return state{}, fmt.Errorf("%w: not in the canonical encoding", errState)
	}
	if *f.MAC == "" {
		return s, nil
	}
	mac, ok := strings.CutPrefix(*f.MAC, stateMACPrefix)
	got, err := base64.StdEncoding.Strict().DecodeString(mac)
	if !ok || err != nil || len(got) != sha256.Size || base64.StdEncoding.EncodeToString(got) != mac {
		return state{}, fmt.Errorf("%w: malformed MAC", errState)
	}
	s.keyed = true
	if key != nil && !hmac.Equal(got, s.mac(key)) {
		return state{}, errStateAuth
	}
	return s, nil
}

// mac returns the MAC of s with key.
func (s state) mac(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(stateMACContext))
	m.Write(s.encode(""))
	return m.Sum(nil)
}

// marshal encodes s canonically, with a MAC when key is not nil.
func (s state) marshal(key []byte) []byte {
	if key == nil {
		return s.encode("")
	}
	return s.encode(stateMACPrefix + base64.StdEncoding.EncodeToString(s.mac(key)))
}

// encode is the canonical encoding with the given MAC field (sorted keys,
// one log per line).
func (s state) encode(mac string) []byte {
	ids := make([]string, 0, len(s.Logs))
	for id := range s.Logs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b bytes.Buffer
	// Keys, log IDs, base64 hashes and the MAC need no JSON escaping.
	fmt.Fprintf(&b, "{\"version\":%d,\"verifier_key\":%q,\"state_chain\":{\"length\":%d,\"head\":%q},\"logs\":{",
		stateVersion, s.Key, s.Chain.Length, s.chainHead())
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
	fmt.Fprintf(&b, "},\"mac\":%q}\n", mac)
	return b.Bytes()
}

func (s state) chainHead() string { return s.Chain.Hash.String() }

// readState reads a state file; a missing file is an empty state (the
// first run), reported by first.
func readState(path string, key []byte) (s state, first bool, err error) {
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
	s, err = parseState(b, key)
	return s, false, err
}

// merge returns s updated with the verified trees, final sizes and state
// chain head of rep, never moving anything backwards, and with key
// pinned.
func (s state) merge(rep *audit.Report, key string) state {
	out := newState()
	out.Key = key
	out.Chain = s.Chain
	if rep.State.Length >= s.Chain.Length {
		out.Chain = rep.State.StateHead
	}
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

// writeState replaces the file at path atomically, with mode 0600, so
// that a crash leaves the old state or the new one, never a torn file.
// With key, the file carries its MAC.
func writeState(path string, s state, key []byte) error {
	return writeFileAtomic(path, s.marshal(key), 0o600)
}

// writeFileAtomic replaces path with b and gives it mode (temporary file
// in the same directory, fsync, rename, fsync of the directory).
func writeFileAtomic(path string, b []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".idvault-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
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

// The state key file: a secret the operator keeps apart from the state
// file (another directory, owner or machine), exactly
//
//	idvault verify state key v1
//	<base64 of 32 random bytes>
const (
	stateKeyHeader = "idvault verify state key v1"
	stateKeyLen    = 32
	maxStateKey    = 256
)

// stateKey is a state key; it prints redacted.
type stateKey []byte

func (stateKey) String() string   { return "stateKey{REDACTED}" }
func (stateKey) GoString() string { return "stateKey{REDACTED}" }

// parseStateKey decodes a state key file strictly. Its errors never quote
// the file.
func parseStateKey(b []byte) (stateKey, error) {
	if len(b) > maxStateKey {
		return nil, fmt.Errorf("%w: state key file larger than %d bytes", errState, maxStateKey)
	}
	header, rest, ok := strings.Cut(string(b), "\n")
	k64, tail, ok2 := strings.Cut(rest, "\n")
	if !ok || !ok2 || header != stateKeyHeader || tail != "" {
		return nil, fmt.Errorf("%w: not a state key file (made by idvault audit state-key)", errState)
	}
	k, err := base64.StdEncoding.Strict().DecodeString(k64)
	if err != nil || len(k) != stateKeyLen || base64.StdEncoding.EncodeToString(k) != k64 {
		return nil, fmt.Errorf("%w: malformed state key", errState)
	}
	return stateKey(k), nil
}

// formatStateKey encodes k as a state key file.
func formatStateKey(k stateKey) []byte {
	return []byte(stateKeyHeader + "\n" + base64.StdEncoding.EncodeToString(k) + "\n")
}

// readStateKey reads the state key named by --state-key-file, else by
// $IDVAULT_STATE_KEY_FILE; nil when neither is set.
func (c *cli) readStateKey(flagValue string) (stateKey, error) {
	path := flagValue
	if path == "" {
		path = c.env("IDVAULT_STATE_KEY_FILE")
	}
	if path == "" {
		return nil, nil
	}
	b, err := readSmallFile(path, maxStateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: state key file: %v", errState, err)
	}
	return parseStateKey(b)
}

var stateKeyCommand = &command{
	path:    "audit state-key",
	summary: "make the key that authenticates audit verify's --state file",
	usage:   "audit state-key --out FILE",
	help: `Writes a new random key to FILE (created, never overwritten, mode 0600),
for "idvault audit verify --state STATE --state-key-file FILE" (or
IDVAULT_STATE_KEY_FILE=FILE). With it, verify writes the state file with a
MAC (HMAC-SHA256) and refuses a state file that fails authentication, that
lacks a MAC, or that is missing, instead of trusting whatever is there: so
whoever can write the state file can no longer drop a log from it, unpin
the verifier key or lower the state chain's head unnoticed.

Keep the key where the state file's writers cannot reach: another
directory owned by another user, a secrets manager, another machine. A
copy of the key beside the state file protects nothing. What the key
cannot prevent: an older copy of the state file, authenticated with the
same key, put back in place (it forgets what later runs learnt); keep
the state file itself out of reach of the store's credentials.

Starting with a key: run verify once with --init-state, which accepts a
missing or unauthenticated state file this one time and writes it keyed.

Example:
  idvault audit state-key --out /etc/idvault/verify-state.key
  idvault audit verify --store file:///var/lib/idvault --verifier-key-file /etc/idvault/audit.pub \
      --state /var/lib/idvault-verify/state --state-key-file /etc/idvault/verify-state.key --init-state
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		out := fs.String("out", "", "write the new key to `FILE` (must not exist)")
		return func(ctx context.Context, c *cli) int {
			if *out == "" {
				return c.usageError("--out FILE is required")
			}
			k := make(stateKey, stateKeyLen)
			_, _ = rand.Read(k) // never fails (crypto/rand aborts instead)
			f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return c.fail(fmt.Errorf("creating the state key file: %w", err))
			}
			_, err = f.Write(formatStateKey(k))
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(*out)
				return c.fail(fmt.Errorf("writing the state key file: %w", err))
			}
			fmt.Fprintf(c.stderr, "state key written to %s; keep it apart from the state file\n", *out)
			return exitOK
		}
	},
}
