package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The golden vectors are frozen: they were written once by
//
//	go test -run TestGolden -update-golden ./internal/envelope
//
// and must never be regenerated for format version 1. If this test fails,
// the code no longer reads (or writes) what earlier versions stored: restore
// compatibility, or bump Version and add new vectors beside these.
var updateGolden = flag.Bool("update-golden", false, "rewrite the frozen v1 golden vectors (never for an existing version)")

const goldenKEKID = "golden:kek-v1"

// goldenKEKKey is the fixed test KEK key (AES-256-GCM). Test data only.
var goldenKEKKey = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")

type goldenCase struct {
	name    string
	keyByte byte // the data key is 32 copies of it (test data only)
	md      Metadata
	size    int
}

func goldenCases() []goldenCase {
	mac := sha256.Sum256([]byte("golden subject"))
	return []goldenCase{
		{
			name:    "empty-canary",
			keyByte: 0x11,
			size:    0,
			md: Metadata{
				VaultID:     [16]byte{0: 0xa0, 15: 0xaf},
				ObjectID:    [16]byte{0: 0xb0, 15: 0xbf},
				Kind:        "passport",
				ContentType: "image/png",
				Size:        0,
				Created:     time.Date(2021, 4, 20, 0, 0, 0, 1, time.UTC),
				Expires:     time.Date(2021, 4, 23, 0, 0, 0, 1, time.UTC),
				Canary:      true,
			},
		},
		{
			name:    "multi-segment-held",
			keyByte: 0x22,
			size:    2*segmentSize + 123,
			md: Metadata{
				VaultID:     [16]byte{0: 0xa0, 15: 0xaf},
				ObjectID:    [16]byte{0: 0xc0, 15: 0xcf},
				Kind:        "drivers-license",
				ContentType: "image/jpeg",
				Size:        2*segmentSize + 123,
				Created:     time.Date(2021, 4, 26, 23, 59, 59, 999999999, time.UTC),
				Expires:     time.Date(2021, 4, 29, 23, 59, 59, 999999999, time.UTC),
				SubjectMAC:  mac[:],
				LegalHold:   true,
			},
		},
	}
}

// goldenPlaintext is a stable byte stream: SHA-256 of a counter.
func goldenPlaintext(n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		out = append(out, h[:]...)
	}
	return out[:n]
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func goldenPath(name, ext string) string {
	return filepath.Join("testdata", "golden", "v1-"+name+"."+ext)
}

func TestGolden(t *testing.T) {
	ctx := context.Background()
	kek := newTestKEK(goldenKEKID, goldenKEKKey)
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			pt := goldenPlaintext(c.size)
			if *updateGolden {
				rec, k, err := seal(ctx, kek, c.md, bytes.NewReader(bytes.Repeat([]byte{c.keyByte}, dataKeyLen)))
				if err != nil {
					t.Fatal(err)
				}
				ct := encryptBytes(t, k, pt, segmentSize)
				if err := os.MkdirAll(filepath.Dir(goldenPath(c.name, "")), 0o755); err != nil {
					t.Fatal(err)
				}
				for ext, b := range map[string][]byte{"record": rec, "payload": ct} {
					if err := os.WriteFile(goldenPath(c.name, ext), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			rec, err := os.ReadFile(goldenPath(c.name, "record"))
			if err != nil {
				t.Fatal(err)
			}
			ct, err := os.ReadFile(goldenPath(c.name, "payload"))
			if err != nil {
				t.Fatal(err)
			}

			// The reader: the frozen record opens to the known metadata and key,
			// and the frozen payload decrypts to the known plaintext.
			md, k, err := Open(ctx, kek, c.md.VaultID, c.md.ObjectID, rec)
			if err != nil {
				t.Fatalf("Open(golden record): %v", err)
			}
			if !mdEqual(md, c.md) {
				t.Fatalf("golden metadata: got %+v", md)
			}
			if k.key != [32]byte(bytes.Repeat([]byte{c.keyByte}, 32)) {
				t.Fatal("golden record unwrapped to another data key")
			}
			out, err := decryptAll(k, ct, segmentSize)
			if err != nil || !bytes.Equal(out, pt) {
				t.Fatalf("golden payload: %v", err)
			}

			// The writer: it still produces these bytes wherever the output
			// is deterministic (everything but the KEK's and Tink's nonces).
			fresh, err := Reseal(ctx, kek, c.md, k)
			if err != nil {
				t.Fatal(err)
			}
			if len(fresh) != len(rec) {
				t.Fatalf("record length changed: %d, golden %d", len(fresh), len(rec))
			}
			_, blob, _ := parseRecord(rec)
			hdrLen := len(rec) - len(blob)
			if !bytes.Equal(fresh[:hdrLen], rec[:hdrLen]) {
				t.Fatal("record clear header changed")
			}
			wrapped, err := kek.Decrypt(ctx, blob, recordAD(c.md.VaultID, c.md.ObjectID, goldenKEKID))
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(bytes.Clone(k.key[:]), k.commit[:]...), appendMetadata(nil, &c.md)...)
			if !bytes.Equal(wrapped, want) {
				t.Fatal("wrapped plaintext encoding changed")
			}
			freshCT := encryptBytes(t, k, pt, segmentSize)
			if len(freshCT) != len(ct) || int64(len(ct)) != PayloadSize(int64(c.size)) {
				t.Fatal("payload length changed (segment size?)")
			}
			if !bytes.Equal(freshCT[:payloadHeaderLen+1], ct[:payloadHeaderLen+1]) {
				t.Fatal("payload header changed")
			}
		})
	}
}
