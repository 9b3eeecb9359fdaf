package kms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
)

// cheapOpts keeps argon2id fast in tests. Never use these in production.
var cheapOpts = LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1}

// tightLimits lets tamper tests run argon2id on every edited header without
// letting a flipped bit ask for gigabytes.
var tightLimits = kdfLimits{maxTime: 4, maxMemoryKiB: 1024, maxWork: 4096}

var testPassphrase = []byte("test passphrase: not a secret")

func newTestLocal(t *testing.T) (string, *Local) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek.keyset")
	l, err := CreateLocal(path, testPassphrase, cheapOpts)
	if err != nil {
		t.Fatalf("CreateLocal: %v", err)
	}
	return path, l
}

func mustEncrypt(t testing.TB, k KEK, pt, ad []byte) []byte {
	t.Helper()
	ct, err := k.Encrypt(context.Background(), pt, ad)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return ct
}

// decryptCase is a ciphertext and associated data that k must refuse.
type decryptCase struct {
	name string
	k    KEK
	ct   []byte
	ad   []byte
}

// wantRefused checks that every case fails with ErrDecrypt and returns no
// bytes; with exact, the error must be ErrDecrypt itself, wrapping nothing
// of the backend's message.
func wantRefused(t *testing.T, cases []decryptCase, exact bool) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.k.Decrypt(context.Background(), tt.ct, tt.ad)
			if !errors.Is(err, ErrDecrypt) || exact && err != ErrDecrypt || got != nil {
				t.Fatalf("Decrypt = %d bytes, %v; want ErrDecrypt (exactly: %v)", len(got), err, exact)
			}
		})
	}
}

// wantBitFlipsRefused flips each bit of ct in turn: k must refuse every
// one with ErrDecrypt.
func wantBitFlipsRefused(t *testing.T, k KEK, ct, ad []byte) {
	t.Helper()
	for i := range len(ct) * 8 {
		bad := bytes.Clone(ct)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := k.Decrypt(context.Background(), bad, ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("bit %d flipped: err = %v, want ErrDecrypt", i, err)
		}
	}
}

func mustDecrypt(t testing.TB, k KEK, ct, ad, want []byte) {
	t.Helper()
	pt, err := k.Decrypt(context.Background(), ct, ad)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if !bytes.Equal(pt, want) {
		t.Fatal("Decrypt returned different plaintext")
	}
}

// primaryKeyID is the key ID of l's primary key.
func primaryKeyID(t *testing.T, l *Local) uint32 {
	t.Helper()
	p, err := l.state.Load().handle.Primary()
	if err != nil {
		t.Fatal(err)
	}
	return p.KeyID()
}

// ctKeyID is the key ID in a Tink-prefixed ciphertext.
func ctKeyID(ct []byte) uint32 { return binary.BigEndian.Uint32(ct[1:5]) }

func TestLocalRoundTrip(t *testing.T) {
	path, l := newTestLocal(t)
	reopened, err := OpenLocal(path, testPassphrase)
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	tests := []struct {
		name   string
		pt, ad []byte
	}{
		{"data key, AD", bytes.Repeat([]byte{0xa5}, 32), bytes.Repeat([]byte{7}, 64)},
		{"empty plaintext", nil, []byte("ad")},
		{"no AD", []byte("data key"), nil},
		{"large", bytes.Repeat([]byte("x"), 1<<16), []byte("ad")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := mustEncrypt(t, l, tt.pt, tt.ad)
			if len(tt.pt) > 0 && bytes.Contains(ct, tt.pt) {
				t.Fatal("ciphertext contains the plaintext")
			}
			mustDecrypt(t, l, ct, tt.ad, tt.pt)
			mustDecrypt(t, reopened, ct, tt.ad, tt.pt)
			ct2 := mustEncrypt(t, reopened, tt.pt, tt.ad)
			mustDecrypt(t, l, ct2, tt.ad, tt.pt)
		})
	}
}

func TestLocalDecryptFailures(t *testing.T) {
	_, l := newTestLocal(t)
	_, other := newTestLocal(t)
	pt, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("object-1|meta")
	ct := mustEncrypt(t, l, pt, ad)
	wantRefused(t, []decryptCase{
		{"other AD", l, ct, []byte("object-2|meta")},
		{"AD extended", l, ct, append(bytes.Clone(ad), 0)},
		{"AD truncated", l, ct, ad[:len(ad)-1]},
		{"no AD", l, ct, nil},
		{"other keyset", other, ct, ad},
		{"empty", l, nil, ad},
		{"garbage", l, bytes.Repeat([]byte{1}, 64), ad},
	}, false)
}

func TestLocalCiphertextTamper(t *testing.T) {
	_, l := newTestLocal(t)
	pt, ad := bytes.Repeat([]byte{1}, 32), []byte("ad")
	ct := mustEncrypt(t, l, pt, ad)
	wantBitFlipsRefused(t, l, ct, ad)
	for n := range len(ct) {
		if _, err := l.Decrypt(context.Background(), ct[:n], ad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("truncated to %d: err = %v, want ErrDecrypt", n, err)
		}
	}
}

func TestLocalContextDone(t *testing.T) {
	_, l := newTestLocal(t)
	ct := mustEncrypt(t, l, []byte("k"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Encrypt(ctx, []byte("k"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Encrypt: err = %v, want context.Canceled", err)
	}
	if _, err := l.Decrypt(ctx, ct, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Decrypt: err = %v, want context.Canceled", err)
	}
}

func TestOpenLocalWrongPassphrase(t *testing.T) {
	path, _ := newTestLocal(t)
	tests := []struct {
		name string
		pass []byte
	}{
		{"other", []byte("another passphrase")},
		{"empty", nil},
		{"prefix", testPassphrase[:len(testPassphrase)-1]},
		{"extended", append(bytes.Clone(testPassphrase), '!')},
		{"case", bytes.ToUpper(testPassphrase)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := OpenLocal(path, tt.pass)
			if !errors.Is(err, ErrWrongPassphrase) || l != nil {
				t.Fatalf("OpenLocal = %v, %v; want ErrWrongPassphrase", l, err)
			}
			if len(tt.pass) > 0 && strings.Contains(err.Error(), string(tt.pass)) {
				t.Fatal("error message contains the passphrase")
			}
		})
	}
}

func TestOpenLocalMissing(t *testing.T) {
	_, err := OpenLocal(filepath.Join(t.TempDir(), "absent"), testPassphrase)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

// TestOpenLocalTruncated opens the file cut at every offset, through the
// real OpenLocal path.
func TestOpenLocalTruncated(t *testing.T) {
	path, _ := newTestLocal(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.keyset")
	for n := range len(data) {
		if err := os.WriteFile(cut, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLocal(cut, testPassphrase)
		if l != nil || !(errors.Is(err, ErrKeysetCorrupt) || errors.Is(err, ErrWrongPassphrase)) {
			t.Fatalf("truncated to %d of %d: err = %v, want ErrKeysetCorrupt or ErrWrongPassphrase", n, len(data), err)
		}
	}
}

// TestOpenLocalBitFlips flips every bit of the file, header and body.
func TestOpenLocalBitFlips(t *testing.T) {
	path, _ := newTestLocal(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(data) * 8 {
		bad := bytes.Clone(data)
		bad[i/8] ^= 1 << (i % 8)
		l, err := openLocalBytes(path, bad, testPassphrase, tightLimits)
		if l != nil || !(errors.Is(err, ErrKeysetCorrupt) || errors.Is(err, ErrWrongPassphrase)) {
			t.Fatalf("byte %d bit %d flipped: err = %v, want ErrKeysetCorrupt or ErrWrongPassphrase", i/8, i%8, err)
		}
	}
	// Whole header bytes replaced, not just single bits.
	_, header, _, err := parseFile(data, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(header) {
		for _, x := range []byte{0xff, 0x80, 0x55} {
			bad := bytes.Clone(data)
			bad[i] ^= x
			if l, err := openLocalBytes(path, bad, testPassphrase, tightLimits); l != nil || err == nil {
				t.Fatalf("header byte %d ^ %#x: opened", i, x)
			}
		}
	}
}

// TestOpenLocalHeaderEdits edits single header fields on purpose.
func TestOpenLocalHeaderEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.keyset")
	if _, err := CreateLocal(path, testPassphrase, LocalOptions{Time: 2, MemoryKiB: 128, Threads: 2}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr, header, body, err := parseFile(data, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	// rebuild re-encodes the file with an edited header and the old body.
	rebuild := func(edit func(h *fileHeader)) []byte {
		h := hdr
		h.salt = bytes.Clone(hdr.salt)
		edit(&h)
		return encodeFile(h.marshal(), body)
	}
	offVersion := len(fileMagic)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"unchanged", rebuild(func(*fileHeader) {}), nil},
		{"weaker time", rebuild(func(h *fileHeader) { h.kdf.time = 1 }), ErrWrongPassphrase},
		{"weaker memory", rebuild(func(h *fileHeader) { h.kdf.memoryKiB = 16 }), ErrWrongPassphrase},
		{"fewer threads", rebuild(func(h *fileHeader) { h.kdf.threads = 1 }), ErrWrongPassphrase},
		// The keyset ID does not enter the KDF: only the associated data
		// catches this edit.
		{"keyset ID", rebuild(func(h *fileHeader) { h.keysetID[0] ^= 1 }), ErrWrongPassphrase},
		{"salt", rebuild(func(h *fileHeader) { h.salt[0] ^= 1 }), ErrWrongPassphrase},
		{"longer salt", rebuild(func(h *fileHeader) { h.salt = append(h.salt, 0) }), ErrWrongPassphrase},
		{"short salt", rebuild(func(h *fileHeader) { h.salt = h.salt[:15] }), ErrKeysetCorrupt},
		{"huge memory", rebuild(func(h *fileHeader) { h.kdf.memoryKiB = 0xffffffff }), ErrKeysetCorrupt},
		{"huge time", rebuild(func(h *fileHeader) { h.kdf.time = 0xffffffff }), ErrKeysetCorrupt},
		{"huge work", rebuild(func(h *fileHeader) { h.kdf.time, h.kdf.memoryKiB = 3, 2<<20 }), ErrKeysetCorrupt},
		{"zero time", rebuild(func(h *fileHeader) { h.kdf.time = 0 }), ErrKeysetCorrupt},
		{"zero threads", rebuild(func(h *fileHeader) { h.kdf.threads = 0 }), ErrKeysetCorrupt},
		{"memory below 8/thread", rebuild(func(h *fileHeader) { h.kdf.memoryKiB = 15 }), ErrKeysetCorrupt},
		{"version 0", func() []byte { b := bytes.Clone(data); b[offVersion] = 0; return b }(), ErrKeysetCorrupt},
		{"version 2", func() []byte { b := bytes.Clone(data); b[offVersion] = 2; return b }(), ErrKeysetCorrupt},
		{"bad magic", func() []byte { b := bytes.Clone(data); b[0] = 'X'; return b }(), ErrKeysetCorrupt},
		{"other kdf", bytes.Replace(data, []byte("argon2id"), []byte("argon2i\x00"), 1), ErrKeysetCorrupt},
		{"trailing byte", append(bytes.Clone(data), 0), ErrKeysetCorrupt},
		{"empty body", encodeFile(header, nil), ErrKeysetCorrupt},
		{"body too long", func() []byte { b := bytes.Clone(data); b[len(header)] = 0xff; return b }(), ErrKeysetCorrupt},
		{"empty file", nil, ErrKeysetCorrupt},
		{"too large", make([]byte, maxFileSize+1), ErrKeysetCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// defaultLimits: the bounds under test are the real ones.
			l, err := openLocalBytes(path, tt.data, testPassphrase, defaultLimits)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || l != nil {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLocalOptionsParams(t *testing.T) {
	tests := []struct {
		name string
		opts LocalOptions
		want kdfParams
		err  error
	}{
		{"defaults", LocalOptions{}, kdfParams{DefaultArgon2Time, DefaultArgon2MemoryKiB, DefaultArgon2Threads}, nil},
		{"cheap", cheapOpts, kdfParams{1, 64, 1}, nil},
		{"RFC 9106 first option", LocalOptions{Time: 1, MemoryKiB: 2 << 20, Threads: 4}, kdfParams{1, 2 << 20, 4}, nil},
		{"partial", LocalOptions{MemoryKiB: 1024}, kdfParams{DefaultArgon2Time, 1024, DefaultArgon2Threads}, nil},
		{"threads 256", LocalOptions{Threads: 256}, kdfParams{}, ErrInvalidOptions},
		{"memory below 8/thread", LocalOptions{MemoryKiB: 31, Threads: 4}, kdfParams{}, ErrInvalidOptions},
		{"memory above 2 GiB", LocalOptions{Time: 1, MemoryKiB: 2<<20 + 1}, kdfParams{}, ErrInvalidOptions},
		{"time above 64", LocalOptions{Time: 65, MemoryKiB: 64}, kdfParams{}, ErrInvalidOptions},
		{"work above bound", LocalOptions{Time: 3, MemoryKiB: 2 << 20}, kdfParams{}, ErrInvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.params()
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("params() = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestCreateLocalRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		pass []byte
		opts LocalOptions
		want error
	}{
		{"existing file", existing, testPassphrase, cheapOpts, ErrKeysetExists},
		{"empty passphrase", filepath.Join(dir, "a"), nil, cheapOpts, ErrInvalidOptions},
		{"bad options", filepath.Join(dir, "b"), testPassphrase, LocalOptions{Threads: 1000}, ErrInvalidOptions},
		{"missing directory", filepath.Join(dir, "no", "such"), testPassphrase, cheapOpts, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := CreateLocal(tt.path, tt.pass, tt.opts)
			if !errors.Is(err, tt.want) || l != nil {
				t.Fatalf("CreateLocal = %v, %v; want %v", l, err, tt.want)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "precious" {
		t.Fatal("existing file was modified")
	}
	assertNoTempFiles(t, dir)
}

// TestCreateLocalLinkRace checks the link step itself: the file appears
// after CreateLocal's early check and must still not be overwritten.
func TestCreateLocalLinkRace(t *testing.T) {
	path, l := newTestLocal(t)
	before, _ := os.ReadFile(path)
	file, err := sealKeyset(l.hdr, l.state.Load().handle, l.wrap)
	if err != nil {
		t.Fatal(err)
	}
	if err := createFile(path, file); !errors.Is(err, ErrKeysetExists) {
		t.Fatalf("createFile over existing: err = %v, want ErrKeysetExists", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("existing keyset overwritten")
	}
	assertNoTempFiles(t, filepath.Dir(path))
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func assertMode0600(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("mode = %v, want -rw-------", fi.Mode())
	}
}

func TestLocalRotate(t *testing.T) {
	path, l := newTestLocal(t)
	assertMode0600(t, path)
	id := l.ID()
	pt, ad := bytes.Repeat([]byte{9}, 32), []byte("ad")
	ct1 := mustEncrypt(t, l, pt, ad)
	oldPrimary := primaryKeyID(t, l)

	// Keep the pre-rotation file to prove the new key is really new.
	oldPath := filepath.Join(t.TempDir(), "old.keyset")
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(oldPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := l.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	assertMode0600(t, path)
	assertNoTempFiles(t, filepath.Dir(path))
	newPrimary := primaryKeyID(t, l)
	if newPrimary == oldPrimary {
		t.Fatal("Rotate kept the same primary")
	}
	ct2 := mustEncrypt(t, l, pt, ad)
	if ctKeyID(ct1) != oldPrimary || ctKeyID(ct2) != newPrimary {
		t.Fatal("ciphertexts not made under the expected primary keys")
	}
	mustDecrypt(t, l, ct1, ad, pt)
	if l.ID() != id {
		t.Fatal("ID changed on Rotate")
	}

	// Open the file again: both keys are there, the new one is primary.
	re, err := OpenLocal(path, testPassphrase)
	if err != nil {
		t.Fatalf("OpenLocal after Rotate: %v", err)
	}
	if re.ID() != id {
		t.Fatal("ID changed on reopen")
	}
	if n := re.state.Load().handle.Len(); n != 2 {
		t.Fatalf("reopened keyset has %d keys, want 2", n)
	}
	mustDecrypt(t, re, ct1, ad, pt)
	mustDecrypt(t, re, ct2, ad, pt)
	if ct3 := mustEncrypt(t, re, pt, ad); ctKeyID(ct3) != newPrimary {
		t.Fatal("reopened keyset does not encrypt under the new primary")
	}

	// The pre-rotation keyset knows nothing of the new key.
	old, err := OpenLocal(oldPath, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if old.ID() != id {
		t.Fatal("ID differs between the file before and after Rotate")
	}
	if _, err := old.Decrypt(context.Background(), ct2, ad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("old keyset decrypting new ciphertext: err = %v, want ErrDecrypt", err)
	}

	// Rotate again from the reopened Local.
	if err := re.Rotate(); err != nil {
		t.Fatal(err)
	}
	re2, err := OpenLocal(path, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if n := re2.state.Load().handle.Len(); n != 3 {
		t.Fatalf("keyset has %d keys after two rotations, want 3", n)
	}
	mustDecrypt(t, re2, ct1, ad, pt)
	mustDecrypt(t, re2, ct2, ad, pt)
}

func TestLocalRotateDetectsChange(t *testing.T) {
	path, a := newTestLocal(t)
	b, err := OpenLocal(path, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Rotate(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if err := b.Rotate(); !errors.Is(err, ErrKeysetChanged) {
		t.Fatalf("stale Rotate: err = %v, want ErrKeysetChanged", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, after) {
		t.Fatal("stale Rotate rewrote the file")
	}
	// a is still current and can rotate again.
	if err := a.Rotate(); err != nil {
		t.Fatalf("Rotate after refused stale Rotate: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Rotate(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Rotate of removed file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestLocalID(t *testing.T) {
	pathA, a := newTestLocal(t)
	_, b := newTestLocal(t)
	if !regexp.MustCompile(`^local:[0-9a-f]{16}$`).MatchString(a.ID()) {
		t.Fatalf("ID %q not of the form local:<16 hex>", a.ID())
	}
	if a.ID() == b.ID() {
		t.Fatal("two keysets share an ID")
	}
	data, _ := os.ReadFile(pathA)
	hdr, _, _, err := parseFile(data, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(hdr.keysetID[:])
	if want := "local:" + hex.EncodeToString(sum[:8]); a.ID() != want {
		t.Fatalf("ID = %q, want %q (hash of the keyset-ID field)", a.ID(), want)
	}
}

func TestLocalFormatRedacts(t *testing.T) {
	_, l := newTestLocal(t)
	want := "kms.Local(" + l.ID() + ")"
	e, err := l.state.Load().handle.Entry(0)
	if err != nil {
		t.Fatal(err)
	}
	keyBytes := e.Key().(*aesgcm.Key).KeyBytes().Data(insecuresecretdataaccess.Token{})
	tests := []struct {
		format string
		arg    any
		want   string
	}{
		{"%s", l, want},
		{"%v", l, want},
		{"%+v", l, want},
		{"%#v", l, want},
		{"%q", l, fmt.Sprintf("%q", want)},
		{"%x", l, want},
		{"%d", l, want},
		{"%+v", struct{ K *Local }{l}, "{K:" + want + "}"},
		{"%#v", []*Local{l}, "[]*kms.Local{" + want + "}"},
		{"%v", (*Local)(nil), "kms.Local(nil)"},
	}
	for _, tt := range tests {
		got := fmt.Sprintf(tt.format, tt.arg)
		if got != tt.want {
			t.Errorf("Sprintf(%q) = %q, want %q", tt.format, got, tt.want)
		}
		if bytes.Contains([]byte(got), keyBytes) || strings.Contains(got, hex.EncodeToString(keyBytes)) {
			t.Errorf("Sprintf(%q) prints key bytes", tt.format)
		}
	}
	if l.String() != want || l.GoString() != want {
		t.Errorf("String/GoString = %q/%q, want %q", l.String(), l.GoString(), want)
	}
	if got := fmt.Sprintf("%+v %#v", l.wrap, l.wrap); strings.Contains(got, "{") {
		t.Errorf("file-key AEAD formats its fields: %s", got)
	}
}

func TestLocalConcurrent(t *testing.T) {
	_, l := newTestLocal(t)
	ctx := context.Background()
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Go(func() {
			ad := []byte{byte(w)}
			for i := range rounds {
				pt := []byte{byte(w), byte(i)}
				ct, err := l.Encrypt(ctx, pt, ad)
				if err != nil {
					errs <- err
					return
				}
				got, err := l.Decrypt(ctx, ct, ad)
				if err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("worker %d round %d: decrypt failed", w, i)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 3 {
			if err := l.Rotate(); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
