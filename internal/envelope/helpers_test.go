package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/tink-crypto/tink-go/v2/aead/subtle"
)

// testKEK adapts an in-process Tink AES-256-GCM AEAD to kms.KEK (kms.FromAEAD
// is being written elsewhere; this keeps the package self-contained).
type testKEK struct {
	a  *subtle.AESGCM
	id string
}

func newTestKEK(id string, key []byte) *testKEK {
	a, err := subtle.NewAESGCM(key)
	if err != nil {
		panic(err) // a fixed test key of the wrong length
	}
	return &testKEK{a: a, id: id}
}

// seededKEK derives the KEK key from a label, so tests can make a KEK with a
// forged (equal) ID but a different key.
func seededKEK(id, label string) *testKEK {
	k := sha256.Sum256([]byte("test kek " + label))
	return newTestKEK(id, k[:])
}

func (k *testKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return k.a.Encrypt(pt, ad)
}

func (k *testKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pt, err := k.a.Decrypt(ct, ad)
	if err != nil {
		return nil, kms.ErrDecrypt
	}
	return pt, nil
}

func (k *testKEK) ID() string { return k.id }

var _ kms.KEK = (*testKEK)(nil)

func id16(s string) [16]byte {
	var b [16]byte
	h := sha256.Sum256([]byte(s))
	copy(b[:], h[:])
	return b
}

func testMD(vault, object string) Metadata {
	mac := sha256.Sum256([]byte("subject " + object))
	return Metadata{
		VaultID:     id16(vault),
		ObjectID:    id16(object),
		Kind:        "drivers-license",
		ContentType: "image/jpeg",
		Size:        12345,
		Created:     time.Date(2021, 4, 20, 12, 0, 0, 123456789, time.UTC),
		Expires:     time.Date(2021, 4, 23, 12, 0, 0, 123456789, time.UTC),
		SubjectMAC:  mac[:],
	}
}

// fixedKey makes a Key with known bytes (never for production: tests only).
func fixedKey(t testing.TB, keyByte byte, vaultID, objectID [16]byte) *Key {
	t.Helper()
	k, err := newKey(bytes.NewReader(bytes.Repeat([]byte{keyByte}, dataKeyLen)), vaultID, objectID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// plaintext returns n deterministic pseudo-random bytes.
func plaintext(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}).Read(b)
	return b
}

// sealOne seals the key record of object "o" in vault "v" under the test
// KEK "test:kek-1", the setting of most tests here.
func sealOne(t testing.TB) (kek *testKEK, md Metadata, rec []byte, k *Key) {
	t.Helper()
	kek = seededKEK("test:kek-1", "one")
	md = testMD("v", "o")
	rec, k, err := Seal(context.Background(), kek, md)
	if err != nil {
		t.Fatal(err)
	}
	return kek, md, rec, k
}

func encryptBytes(t testing.TB, k *Key, pt []byte, segSize int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := k.encrypt(&buf, segSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decryptAll returns the plaintext released before the first error, and
// that error (nil at a clean EOF). Reads use an odd buffer size so segment
// boundaries and Read boundaries do not line up.
func decryptAll(k *Key, payload []byte, segSize int) ([]byte, error) {
	r, err := k.decrypt(bytes.NewReader(payload), segSize)
	if err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, 7919)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// rejected reports whether err is one of the typed rejections.
func rejected(err error) bool {
	return errors.Is(err, ErrTampered) || errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrWrongKEK)
}

// catchPanic runs f and converts a panic into a test failure message.
func catchPanic(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}
