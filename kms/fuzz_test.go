package kms

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// fuzzWrap stands in for the passphrase-derived key, so the fuzzer reaches
// keyset decryption without paying for argon2id on every input.
var fuzzWrap = newWrapAEAD(bytes.Repeat([]byte{0x42}, 32))

// fuzzValidFile is a well-formed file sealed under fuzzWrap.
func fuzzValidFile(tb testing.TB, saltLen int) []byte {
	tb.Helper()
	hdr := newFileHeader(kdfParams{time: 1, memoryKiB: 64, threads: 1})
	hdr.salt = bytes.Repeat([]byte{7}, saltLen)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		tb.Fatal(err)
	}
	file, err := sealKeyset(hdr, h, fuzzWrap)
	if err != nil {
		tb.Fatal(err)
	}
	return file
}

// FuzzParseLocalFile feeds arbitrary bytes to the keyset-file parser and,
// when they parse, to keyset decryption. Parse failures must be
// ErrKeysetCorrupt, what parses must re-encode to the same bytes, and
// decryption must fail with a typed error or yield a usable keyset.
func FuzzParseLocalFile(f *testing.F) {
	golden, err := os.ReadFile(goldenKeyset)
	if err != nil {
		f.Fatal(err)
	}
	valid := fuzzValidFile(f, 16)
	f.Add(golden)
	f.Add(valid)
	f.Add(fuzzValidFile(f, 64))
	f.Add(valid[:len(valid)-1])
	f.Add([]byte(fileMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, header, body, err := parseFile(data, defaultLimits)
		if err != nil {
			if !errors.Is(err, ErrKeysetCorrupt) {
				t.Fatalf("parse error %v is not ErrKeysetCorrupt", err)
			}
			return
		}
		if !bytes.Equal(hdr.marshal(), header) || !bytes.Equal(encodeFile(header, body), data) {
			t.Fatal("parse then encode does not give back the input")
		}
		h, err := openKeyset(header, body, fuzzWrap)
		if err != nil {
			if !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrKeysetCorrupt) {
				t.Fatalf("open error %v is neither ErrWrongPassphrase nor ErrKeysetCorrupt", err)
			}
			return
		}
		l, err := newLocal("", &hdr, fuzzWrap, h, data)
		if err != nil {
			t.Fatalf("opened keyset unusable: %v", err)
		}
		ct := mustEncrypt(t, l, []byte("k"), []byte("ad"))
		if pt, err := l.Decrypt(context.Background(), ct, []byte("ad")); err != nil || string(pt) != "k" {
			t.Fatal("opened keyset does not round-trip")
		}
	})
}

// TestOpenKeysetClassifies checks each failure class of openKeyset with
// bodies a passphrase-holder could craft: they authenticate, yet are not
// what CreateLocal writes.
func TestOpenKeysetClassifies(t *testing.T) {
	hdr := newFileHeader(kdfParams{time: 1, memoryKiB: 64, threads: 1})
	header := hdr.marshal()
	sealWith := func(tmpl string) []byte {
		t.Helper()
		kt := map[string]func() *keyset.Handle{
			"aes256gcm": func() *keyset.Handle { h, _ := keyset.NewHandle(aead.AES256GCMKeyTemplate()); return h },
			"aes128gcm": func() *keyset.Handle { h, _ := keyset.NewHandle(aead.AES128GCMKeyTemplate()); return h },
			"chacha":    func() *keyset.Handle { h, _ := keyset.NewHandle(aead.ChaCha20Poly1305KeyTemplate()); return h },
		}[tmpl]()
		file, err := sealKeyset(hdr, kt, fuzzWrap)
		if err != nil {
			t.Fatal(err)
		}
		_, _, body, err := parseFile(file, defaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	// encryptedKeysetProto hand-encodes an EncryptedKeyset message whose
	// field 2 (encrypted_keyset) is ct.
	encryptedKeysetProto := func(ct []byte) []byte {
		if len(ct) > 127 {
			t.Fatal("ct too long for a one-byte varint")
		}
		return append([]byte{0x12, byte(len(ct))}, ct...)
	}
	garbage, _ := fuzzWrap.Encrypt([]byte{0xff, 0xff, 0xff}, header)
	empty, _ := fuzzWrap.Encrypt(nil, header)
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"AES-256-GCM", sealWith("aes256gcm"), nil},
		{"AES-128-GCM", sealWith("aes128gcm"), ErrKeysetCorrupt},
		{"ChaCha20-Poly1305", sealWith("chacha"), ErrKeysetCorrupt},
		{"not a protobuf", []byte{0xff, 0xff, 0xff}, ErrKeysetCorrupt},
		{"authentic garbage keyset", encryptedKeysetProto(garbage), ErrKeysetCorrupt},
		{"authentic empty keyset", encryptedKeysetProto(empty), ErrKeysetCorrupt},
		{"unauthentic", encryptedKeysetProto(bytes.Repeat([]byte{1}, 40)), ErrWrongPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := openKeyset(header, tt.body, fuzzWrap)
			if tt.want == nil {
				if err != nil || h == nil {
					t.Fatalf("openKeyset: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || h != nil {
				t.Fatalf("openKeyset: err = %v, want %v", err, tt.want)
			}
		})
	}
}
