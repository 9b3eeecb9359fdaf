package kms

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

var (
	// ErrWrongPassphrase means the keyset file did not authenticate: the
	// passphrase is wrong, or the encrypted keyset or the header it is
	// bound to was altered. AES-GCM cannot tell these apart, so neither
	// can this error.
	ErrWrongPassphrase = errors.New("kms: wrong passphrase or tampered keyset file")

	// ErrKeysetCorrupt means the keyset file is not a readable keyset file:
	// truncated, bad magic, unknown version or key derivation function,
	// malformed header, out-of-bounds key derivation parameters, trailing
	// bytes, or a keyset that decrypts but is not an AES-256-GCM keyset.
	ErrKeysetCorrupt = errors.New("kms: keyset file corrupt")

	// ErrKeysetExists is returned by CreateLocal when the path already
	// exists. An existing keyset is never overwritten: that would shred
	// every object wrapped under it.
	ErrKeysetExists = errors.New("kms: keyset file already exists")

	// ErrKeysetChanged is returned by Rotate when the file on disk is no
	// longer the one this Local read or last wrote (another process rotated
	// it, or it was replaced). Writing over it could drop a key; reopen with
	// OpenLocal and rotate again.
	ErrKeysetChanged = errors.New("kms: keyset file changed since it was opened")

	// ErrInvalidOptions is returned by CreateLocal for an empty passphrase
	// or LocalOptions outside the bounds OpenLocal accepts.
	ErrInvalidOptions = errors.New("kms: invalid local keyset options")
)

// Default argon2id parameters for CreateLocal: the second recommended option
// of RFC 9106 (§4), for when 2 GiB per derivation is too much for a server
// that may run several processes. 64 MiB and 3 passes took 0.15–0.35 s on a
// 2-vCPU VM, paid once per OpenLocal at startup, while every passphrase
// guess costs an attacker the same 64 MiB of memory-hard work.
const (
	DefaultArgon2Time      = 3
	DefaultArgon2MemoryKiB = 64 * 1024
	DefaultArgon2Threads   = 4
)

// LocalOptions tunes the argon2id derivation of the key that encrypts a
// keyset file. The zero value of each field selects its default; the values
// used are recorded in the file, so OpenLocal needs no options.
//
// OpenLocal refuses files whose parameters exceed 64 passes, 2 GiB, or
// passes × memory above 4 GiB, so CreateLocal refuses those too.
type LocalOptions struct {
	// Time is the number of argon2id passes. Default DefaultArgon2Time.
	Time uint32
	// MemoryKiB is the argon2id memory in KiB, at least 8 per thread.
	// Default DefaultArgon2MemoryKiB (64 MiB).
	MemoryKiB uint32
	// Threads is the argon2id parallelism, 1 to 255. It is part of the
	// function, not only of its speed: a file made with 4 needs 4 to open.
	// Default DefaultArgon2Threads.
	Threads uint32
}

// params applies defaults and bounds.
func (o LocalOptions) params() (kdfParams, error) {
	o.Time = cmp.Or(o.Time, DefaultArgon2Time)
	o.MemoryKiB = cmp.Or(o.MemoryKiB, DefaultArgon2MemoryKiB)
	o.Threads = cmp.Or(o.Threads, DefaultArgon2Threads)
	if o.Threads > 255 {
		return kdfParams{}, fmt.Errorf("%w: argon2id threads %d above 255", ErrInvalidOptions, o.Threads)
	}
	p := kdfParams{time: o.Time, memoryKiB: o.MemoryKiB, threads: uint8(o.Threads)}
	if err := p.check(defaultLimits); err != nil {
		return kdfParams{}, fmt.Errorf("%w: %s", ErrInvalidOptions, err)
	}
	return p, nil
}

// Local is a KEK backed by a Tink AES-256-GCM keyset kept in a file and
// encrypted at rest under a key derived from a passphrase with argon2id.
//
// Encrypt uses the keyset's primary key; Decrypt accepts any key in the
// keyset, so data wrapped before a Rotate still opens after it. The
// passphrase is not retained; the AES key schedule of the passphrase-derived
// key is, so that Rotate can rewrite the file.
//
// A Local is safe for concurrent use, including Rotate concurrently with
// Encrypt and Decrypt. Several processes may open the same file, but a
// Rotate in one is seen by the others only when they reopen it: until then
// they cannot decrypt data wrapped under the new key. Rotate in one process
// at a time.
type Local struct {
	path string
	id   string
	hdr  *fileHeader
	wrap tink.AEAD // file key, kept for Rotate

	rotateMu sync.Mutex // serialises Rotate
	state    atomic.Pointer[localState]
}

// localState is the keyset in use; Rotate swaps it whole.
type localState struct {
	handle *keyset.Handle
	aead   tink.AEAD
	file   []byte // the file as last read or written, to detect changes
}

// CreateLocal creates a keyset file at path holding one fresh AES-256-GCM
// key, encrypted under passphrase, and returns it open. It fails with
// ErrKeysetExists if path exists (it never overwrites), and with
// ErrInvalidOptions for an empty passphrase or out-of-range options.
//
// The file is written to a temporary file in the same directory with mode
// 0600, synced, then linked into place, and the directory is synced. The
// caller may zero passphrase when CreateLocal returns.
func CreateLocal(path string, passphrase []byte, opts LocalOptions) (*Local, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrInvalidOptions)
	}
	p, err := opts.params()
	if err != nil {
		return nil, err
	}
	// Fail early, before the costly derivation; link below is the real check.
	if _, err := os.Lstat(path); err == nil {
		return nil, ErrKeysetExists
	}
	hdr := newFileHeader(p)
	wrap := deriveWrapAEAD(passphrase, hdr)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("kms: creating keyset: %w", err)
	}
	file, err := sealKeyset(hdr, h, wrap)
	if err != nil {
		return nil, err
	}
	if err := createFile(path, file); err != nil {
		return nil, err
	}
	return newLocal(path, hdr, wrap, h, file)
}

// OpenLocal opens the keyset file at path with passphrase. It fails with
// ErrKeysetCorrupt if the file is not a well-formed keyset file (its key
// derivation parameters are bounded before any work is done), and with
// ErrWrongPassphrase if it does not authenticate. A missing file gives an
// error wrapping fs.ErrNotExist. The caller may zero passphrase when
// OpenLocal returns.
func OpenLocal(path string, passphrase []byte) (*Local, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return openLocalBytes(path, data, passphrase, defaultLimits)
}

// openLocalBytes is OpenLocal on file contents already read.
func openLocalBytes(path string, data, passphrase []byte, lim kdfLimits) (*Local, error) {
	hdr, header, body, err := parseFile(data, lim)
	if err != nil {
		return nil, err
	}
	wrap := deriveWrapAEAD(passphrase, &hdr)
	h, err := openKeyset(header, body, wrap)
	if err != nil {
		return nil, err
	}
	return newLocal(path, &hdr, wrap, h, data)
}

func newLocal(path string, hdr *fileHeader, wrap tink.AEAD, h *keyset.Handle, file []byte) (*Local, error) {
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("%w: keyset unusable", ErrKeysetCorrupt)
	}
	sum := sha256.Sum256(hdr.keysetID[:])
	l := &Local{
		path: path,
		id:   "local:" + hex.EncodeToString(sum[:8]),
		hdr:  hdr,
		wrap: wrap,
	}
	l.state.Store(&localState{handle: h, aead: a, file: file})
	return l, nil
}

// ID returns "local:" and 16 hex digits taken from a hash of the random
// keyset ID written in the file at creation. It is the same across Rotate
// and OpenLocal, differs between keyset files, and reveals nothing about key
// material.
func (l *Local) ID() string { return l.id }

// Encrypt seals plaintext with associatedData under the primary key.
func (l *Local) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("encrypt", err)
	}
	ct, err := l.state.Load().aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("kms: %s: encrypt failed", l.id)
	}
	return ct, nil
}

// Decrypt opens ciphertext made by Encrypt of this keyset, under any of its
// keys, with the same associatedData. Any failure is ErrDecrypt, except a
// context already done, which wraps ErrUnavailable and ctx.Err().
func (l *Local) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("decrypt", err)
	}
	pt, err := l.state.Load().aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Rotate adds a fresh AES-256-GCM key, makes it the primary, and replaces
// the file atomically (temporary file, sync, rename, directory sync). Older
// keys stay in the keyset, so everything wrapped before still decrypts;
// only new Encrypt calls use the new key, which is what lets a vault
// re-wrap data keys at its own pace.
//
// Rotate fails with ErrKeysetChanged, writing nothing, if the file is no
// longer what this Local read or last wrote. On any error before the
// rename, the file and this Local are unchanged.
func (l *Local) Rotate() error {
	l.rotateMu.Lock()
	defer l.rotateMu.Unlock()
	st := l.state.Load()
	cur, err := readFile(l.path)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, st.file) {
		return ErrKeysetChanged
	}
	m := keyset.NewManagerFromHandle(st.handle)
	keyID, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("kms: rotate: %w", err)
	}
	if err := m.SetPrimary(keyID); err != nil {
		return fmt.Errorf("kms: rotate: %w", err)
	}
	h, err := m.Handle()
	if err != nil {
		return fmt.Errorf("kms: rotate: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return fmt.Errorf("kms: rotate: %w", err)
	}
	file, err := sealKeyset(l.hdr, h, l.wrap)
	if err != nil {
		return err
	}
	if err := replaceFile(l.path, file); err != nil {
		// The rename may have happened (a failed directory sync comes
		// after it); adopt the new keyset only if the file holds it.
		if got, rerr := readFile(l.path); rerr == nil && bytes.Equal(got, file) {
			l.state.Store(&localState{handle: h, aead: a, file: file})
		}
		return err
	}
	l.state.Store(&localState{handle: h, aead: a, file: file})
	return nil
}

// String returns "kms.Local(" + ID + ")": no key, path or parameter.
func (l *Local) String() string {
	if l == nil {
		return "kms.Local(nil)"
	}
	return "kms.Local(" + l.id + ")"
}

// GoString is String, so %#v shows no field.
func (l *Local) GoString() string { return l.String() }

// Format prints String for every verb (%v, %+v, %#v, %s, %q, %x…), so no
// verb can reach the keyset.
func (l *Local) Format(f fmt.State, verb rune) { formatRedacted(f, verb, l.String()) }
