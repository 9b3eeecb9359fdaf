package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/cryptobyte"
)

// Keyset file format, version 1. All integers are big-endian.
//
//	magic       15 bytes  "idvault-keyset\x00"
//	version     uint8     1
//	kdf         uint8-length-prefixed name, "argon2id"
//	time        uint32    argon2id passes
//	memory      uint32    argon2id memory in KiB
//	threads     uint8     argon2id lanes
//	salt        uint8-length-prefixed, 16..64 random bytes
//	keyset ID   16 random bytes, fixed at creation (the source of ID())
//	--- everything above is the header, and the associated data of the body
//	body        uint32-length-prefixed Tink EncryptedKeyset (binary proto),
//	            sealed under AES-256-GCM (random 96-bit nonce) with the key
//	            argon2id(passphrase, salt, time, memory, threads) → 32 bytes
//	end of file (trailing bytes are corruption)
//
// Any change to this layout needs a new version number: the golden file in
// testdata pins version 1.
const (
	fileMagic   = "idvault-keyset\x00"
	fileVersion = 1
	kdfArgon2id = "argon2id"

	saltSize      = 16 // written; 16..64 accepted on read
	minSaltSize   = 16
	maxSaltSize   = 64
	keysetIDSize  = 16
	derivedKeyLen = 32

	// maxBodySize bounds the encrypted keyset: an AES-256-GCM key costs
	// about 60 bytes, so this allows thousands of rotations.
	maxBodySize = 1 << 20
	maxFileSize = 512 + maxBodySize
)

// kdfLimits bounds the argon2id parameters accepted from a file or from
// LocalOptions, so that a planted or corrupted file cannot make OpenLocal
// allocate gigabytes or spin for minutes.
type kdfLimits struct {
	maxTime      uint32
	maxMemoryKiB uint32
	maxWork      uint64 // time × memory KiB
}

// defaultLimits admits RFC 9106's first recommended option (t=1, 2 GiB) and
// the default (t=3, 64 MiB) with room to spare, and nothing far beyond.
var defaultLimits = kdfLimits{
	maxTime:      64,
	maxMemoryKiB: 2 << 20, // 2 GiB
	maxWork:      4 << 20, // e.g. 2 passes over 2 GiB, 64 over 64 MiB
}

// kdfParams are the argon2id parameters of one keyset file.
type kdfParams struct {
	time      uint32
	memoryKiB uint32
	threads   uint8
}

// check reports whether p is usable and within lim.
func (p kdfParams) check(lim kdfLimits) error {
	switch {
	case p.time < 1 || p.time > lim.maxTime:
		return fmt.Errorf("argon2id time %d outside 1..%d", p.time, lim.maxTime)
	case p.threads < 1:
		return errors.New("argon2id threads must be at least 1")
	case p.memoryKiB < 8*uint32(p.threads): // RFC 9106: m ≥ 8p
		return fmt.Errorf("argon2id memory %d KiB below 8 KiB per thread", p.memoryKiB)
	case p.memoryKiB > lim.maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB above %d KiB", p.memoryKiB, lim.maxMemoryKiB)
	case uint64(p.time)*uint64(p.memoryKiB) > lim.maxWork:
		return fmt.Errorf("argon2id time×memory %d above %d", uint64(p.time)*uint64(p.memoryKiB), lim.maxWork)
	}
	return nil
}

// fileHeader is the parsed header of a keyset file.
type fileHeader struct {
	kdf      kdfParams
	salt     []byte
	keysetID [keysetIDSize]byte
}

// marshal returns the header bytes, which are also the associated data of
// the encrypted keyset.
func (h *fileHeader) marshal() []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(fileMagic))
	b.AddUint8(fileVersion)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(kdfArgon2id)) })
	b.AddUint32(h.kdf.time)
	b.AddUint32(h.kdf.memoryKiB)
	b.AddUint8(h.kdf.threads)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.salt) })
	b.AddBytes(h.keysetID[:])
	return b.BytesOrPanic() // only fails on lengths we control
}

// encodeFile appends the length-prefixed body to the header bytes.
func encodeFile(header, body []byte) []byte {
	out := make([]byte, 0, len(header)+4+len(body))
	out = append(out, header...)
	out = append(out, byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	return append(out, body...)
}

// parseFile splits a keyset file into its header, the header's bytes and the
// encrypted body. Every failure wraps ErrKeysetCorrupt.
func parseFile(data []byte, lim kdfLimits) (h fileHeader, header, body []byte, err error) {
	corrupt := func(what string) error { return fmt.Errorf("%w: %s", ErrKeysetCorrupt, what) }
	if len(data) > maxFileSize {
		return h, nil, nil, corrupt("file too large")
	}
	s := cryptobyte.String(data)
	var magic []byte
	if !s.ReadBytes(&magic, len(fileMagic)) || string(magic) != fileMagic {
		return h, nil, nil, corrupt("not an idvault keyset file")
	}
	var version uint8
	if !s.ReadUint8(&version) {
		return h, nil, nil, corrupt("truncated header")
	}
	if version != fileVersion {
		return h, nil, nil, corrupt(fmt.Sprintf("unsupported version %d", version))
	}
	var kdf cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&kdf) {
		return h, nil, nil, corrupt("truncated header")
	}
	if string(kdf) != kdfArgon2id {
		return h, nil, nil, corrupt("unsupported key derivation function")
	}
	var salt cryptobyte.String
	if !s.ReadUint32(&h.kdf.time) || !s.ReadUint32(&h.kdf.memoryKiB) || !s.ReadUint8(&h.kdf.threads) ||
		!s.ReadUint8LengthPrefixed(&salt) || !s.CopyBytes(h.keysetID[:]) {
		return h, nil, nil, corrupt("truncated header")
	}
	if err := h.kdf.check(lim); err != nil {
		return h, nil, nil, corrupt(err.Error())
	}
	if len(salt) < minSaltSize || len(salt) > maxSaltSize {
		return h, nil, nil, corrupt("bad salt length")
	}
	h.salt = bytes.Clone(salt)
	header = data[:len(data)-len(s)]
	var n uint32
	if !s.ReadUint32(&n) || n > maxBodySize || !s.ReadBytes(&body, int(n)) {
		return h, nil, nil, corrupt("truncated body")
	}
	if !s.Empty() {
		return h, nil, nil, corrupt("trailing bytes")
	}
	if len(body) == 0 {
		return h, nil, nil, corrupt("empty body")
	}
	return h, header, body, nil
}

// deriveWrapAEAD derives the file key from the passphrase and returns the
// AEAD that seals the keyset. The derived key is zeroed before returning:
// only the AES key schedule inside the returned AEAD remains.
func deriveWrapAEAD(passphrase []byte, h *fileHeader) tink.AEAD {
	key := argon2.IDKey(passphrase, h.salt, h.kdf.time, h.kdf.memoryKiB, h.kdf.threads, derivedKeyLen)
	defer clear(key)
	return newWrapAEAD(key)
}

// newWrapAEAD returns AES-256-GCM with a random nonce prepended to each
// ciphertext, as a tink.AEAD. It does not retain key.
func newWrapAEAD(key []byte) tink.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("kms: " + err.Error()) // key length is ours: 32
	}
	g, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic("kms: " + err.Error())
	}
	return wrapAEAD{g}
}

// wrapAEAD is the file-key AEAD handed to Tink's keyset encryption.
type wrapAEAD struct{ g cipher.AEAD }

func (w wrapAEAD) Encrypt(pt, ad []byte) ([]byte, error) { return w.g.Seal(nil, nil, pt, ad), nil }
func (w wrapAEAD) Decrypt(ct, ad []byte) ([]byte, error) { return w.g.Open(nil, nil, ct, ad) }

// String keeps the key schedule out of any formatted output.
func (wrapAEAD) String() string { return "kms.wrapAEAD(redacted)" }

// GoString is String.
func (w wrapAEAD) GoString() string { return w.String() }

// openTracker records whether Tink got as far as decrypting the body and
// whether the file key authenticated it: that tells a malformed body, a
// wrong passphrase and an authentic but unusable keyset apart without
// parsing Tink's error strings.
type openTracker struct {
	tink.AEAD
	called, opened bool
}

func (t *openTracker) Decrypt(ct, ad []byte) ([]byte, error) {
	pt, err := t.AEAD.Decrypt(ct, ad)
	t.called, t.opened = true, err == nil
	return pt, err
}

// openKeyset decrypts and checks the keyset in body. It fails with
// ErrWrongPassphrase when the body does not authenticate under wrap and
// header, and with ErrKeysetCorrupt when the body is malformed or holds
// anything but AES-256-GCM keys.
func openKeyset(header, body []byte, wrap tink.AEAD) (*keyset.Handle, error) {
	tr := &openTracker{AEAD: wrap}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(body)), tr, header)
	switch {
	case err == nil:
	case !tr.called: // the body is not an EncryptedKeyset message
		return nil, fmt.Errorf("%w: malformed body", ErrKeysetCorrupt)
	case !tr.opened:
		return nil, ErrWrongPassphrase
	default: // authentic, yet not a keyset Tink accepts
		return nil, fmt.Errorf("%w: invalid keyset", ErrKeysetCorrupt)
	}
	if err := checkKeyset(h); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrKeysetCorrupt, err)
	}
	return h, nil
}

// checkKeyset makes sure h is what CreateLocal and Rotate make: AES-256-GCM
// keys with a primary. A file holding, say, a KMS-envelope key would make
// Decrypt call out to the network.
func checkKeyset(h *keyset.Handle) error {
	if _, err := h.Primary(); err != nil {
		return errors.New("no primary key")
	}
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return errors.New("unreadable key entry")
		}
		k, ok := e.Key().(*aesgcm.Key)
		if !ok {
			return errors.New("key is not AES-GCM")
		}
		p, ok := k.Parameters().(*aesgcm.Parameters)
		if !ok || p.KeySizeInBytes() != 32 {
			return errors.New("key is not AES-256-GCM")
		}
	}
	return nil
}

// sealKeyset returns the whole file: header, then h encrypted under wrap
// with the header as associated data.
func sealKeyset(hdr *fileHeader, h *keyset.Handle, wrap tink.AEAD) ([]byte, error) {
	header := hdr.marshal()
	var body bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&body), wrap, header); err != nil {
		return nil, fmt.Errorf("kms: sealing keyset: %w", err)
	}
	if body.Len() > maxBodySize {
		return nil, errors.New("kms: keyset too large; it has been rotated too often")
	}
	return encodeFile(header, body.Bytes()), nil
}

// readFile reads at most maxFileSize+1 bytes of path, so that a huge file
// is refused without reading it all.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("kms: reading keyset file: %w", err)
	}
	return data, nil
}

// writeTemp writes data to a new 0600 file beside path and syncs it. The
// caller links or renames it into place.
func writeTemp(path string, data []byte) (tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("kms: creating temporary file: %w", err)
	}
	tmp = f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; Chmod makes it exact whatever the umask.
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("kms: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("kms: writing keyset file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("kms: syncing keyset file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("kms: closing keyset file: %w", err)
	}
	return tmp, nil
}

// createFile writes data to path atomically, failing with ErrKeysetExists
// if path exists: link(2) never replaces its target.
func createFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return ErrKeysetExists
		}
		return fmt.Errorf("kms: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// replaceFile replaces path with data atomically: readers see the old file
// or the new one, never a mix.
func replaceFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("kms: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a link or rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("kms: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("kms: syncing directory: %w", err)
	}
	return nil
}

// newFileHeader returns a header with fresh random salt and keyset ID.
func newFileHeader(p kdfParams) *fileHeader {
	h := &fileHeader{kdf: p, salt: make([]byte, saltSize)}
	rand.Read(h.salt) // never fails (crypto/rand)
	rand.Read(h.keysetID[:])
	return h
}
