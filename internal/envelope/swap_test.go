package envelope

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
)

type sealed struct {
	md  Metadata
	rec []byte
	key *Key
	pt  []byte
	ct  []byte
}

func mustSeal(t *testing.T, kek *testKEK, md Metadata, pt []byte) sealed {
	t.Helper()
	rec, k, err := Seal(context.Background(), kek, md)
	if err != nil {
		t.Fatal(err)
	}
	return sealed{md: md, rec: rec, key: k, pt: pt, ct: encryptBytes(t, k, pt, segmentSize)}
}

// openAndDecrypt runs the whole read path: Open record under (vault, object),
// then decrypt payload with the key it yields.
func openAndDecrypt(kek *testKEK, vault, object [16]byte, rec, payload []byte) error {
	_, k, err := Open(context.Background(), kek, vault, object, rec)
	if err != nil {
		return err
	}
	_, err = decryptAll(k, payload, segmentSize)
	return err
}

func TestSwapMatrix(t *testing.T) {
	kek := seededKEK("test:kek-1", "one")
	mdA := testMD("vault-X", "object-A")
	mdB := testMD("vault-X", "object-B")
	mdY := testMD("vault-Y", "object-A") // same object ID, other vault
	a := mustSeal(t, kek, mdA, plaintext(3000, 20))
	b := mustSeal(t, kek, mdB, plaintext(3000, 21))
	y := mustSeal(t, kek, mdY, plaintext(3000, 22))
	kek2 := seededKEK("test:kek-2", "one") // same key, other ID
	c := mustSeal(t, kek2, mdA, plaintext(3000, 23))

	// Sanity: the untouched objects open.
	for _, s := range []sealed{a, b, y} {
		if err := openAndDecrypt(kek, s.md.VaultID, s.md.ObjectID, s.rec, s.ct); err != nil {
			t.Fatal(err)
		}
	}

	// A's blob in B's header: same layout, so splice only the blob.
	blobSwap := func(dst, src []byte) []byte {
		_, srcBlob, _ := parseRecord(src)
		_, dstBlob, _ := parseRecord(dst)
		out := bytes.Clone(dst[:len(dst)-len(dstBlob)-2])
		out = binary.BigEndian.AppendUint16(out, uint16(len(srcBlob)))
		return append(out, srcBlob...)
	}

	cases := []struct {
		name          string
		vault, object [16]byte
		rec, payload  []byte
	}{
		{"payload of A with key of B", b.md.VaultID, b.md.ObjectID, b.rec, a.ct},
		{"payload of B with key of A", a.md.VaultID, a.md.ObjectID, a.rec, b.ct},
		{"record of A opened as object B", b.md.VaultID, b.md.ObjectID, a.rec, a.ct},
		{"record of A opened as object B with B's payload", b.md.VaultID, b.md.ObjectID, a.rec, b.ct},
		{"record of vault X opened as vault Y", y.md.VaultID, y.md.ObjectID, a.rec, a.ct},
		{"record of vault Y opened as vault X", a.md.VaultID, a.md.ObjectID, y.rec, y.ct},
		{"payload of vault Y object A under vault X object A", a.md.VaultID, a.md.ObjectID, a.rec, y.ct},
		{"A's wrapped blob in B's record", b.md.VaultID, b.md.ObjectID, blobSwap(b.rec, a.rec), b.ct},
		// (Opened as A it would be A's record byte for byte: the clear
		// headers of A and B are equal. With another KEK's header it is not.)
		{"A's wrapped blob in a record of KEK 2, opened as A", a.md.VaultID, a.md.ObjectID, blobSwap(c.rec, a.rec), a.ct},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []*testKEK{kek, kek2} {
				err := openAndDecrypt(k, c.vault, c.object, c.rec, c.payload)
				if !rejected(err) {
					t.Fatalf("%s: got %v, want a typed rejection", k.ID(), err)
				}
				if id, _ := PeekKEKID(c.rec); id == k.ID() && !errors.Is(err, ErrTampered) {
					t.Fatalf("%s: got %v, want ErrTampered", k.ID(), err)
				}
			}
		})
	}
}

// TestSpliceMetadata: two records of one object under one data key that
// differ only in metadata (a legal hold). Splicing any byte range of one into
// the other must not produce a record that opens, except the originals.
func TestSpliceMetadata(t *testing.T) {
	ctx := context.Background()
	kek, md, recA, k := sealOne(t)
	md2 := md
	md2.LegalHold = true
	md2.Expires = md.Expires.AddDate(10, 0, 0)
	recB, err := Reseal(ctx, kek, md2, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(recA) != len(recB) {
		t.Fatal("records differ in length")
	}
	n := len(recA)
	tried := 0
	for i := 0; i < n; i += 3 {
		for j := i + 1; j <= n; j += 5 {
			bad := bytes.Clone(recA)
			copy(bad[i:j], recB[i:j])
			if bytes.Equal(bad, recA) || bytes.Equal(bad, recB) {
				continue
			}
			tried++
			if _, _, err := Open(ctx, kek, md.VaultID, md.ObjectID, bad); !errors.Is(err, ErrTampered) {
				t.Fatalf("splice [%d:%d]: %v", i, j, err)
			}
		}
	}
	t.Logf("%d splices rejected", tried)
}

func TestWrongKEK(t *testing.T) {
	ctx := context.Background()
	_, md, rec, _ := sealOne(t)
	other := seededKEK("test:kek-2", "two")
	forged := seededKEK("test:kek-1", "forged") // same ID, different key
	if _, _, err := Open(ctx, other, md.VaultID, md.ObjectID, rec); !errors.Is(err, ErrWrongKEK) {
		t.Fatalf("other KEK: %v, want ErrWrongKEK", err)
	}
	if _, _, err := Open(ctx, forged, md.VaultID, md.ObjectID, rec); !errors.Is(err, ErrTampered) {
		t.Fatalf("forged KEK ID: %v, want ErrTampered", err)
	}
	// A record whose clear KEK ID was rewritten to the other KEK's (same
	// length) is refused by that KEK too: the ID is in the AD.
	bad := bytes.Clone(rec)
	copy(bad[len(recordMagic)+2:], other.ID())
	if _, _, err := Open(ctx, other, md.VaultID, md.ObjectID, bad); !errors.Is(err, ErrTampered) {
		t.Fatalf("rewritten KEK ID: %v, want ErrTampered", err)
	}
}

// TestKeyCommitment: a payload whose header commitment is not the key's is
// refused before any segment is decrypted, and a record whose key does not
// match its commitment is refused by Open.
func TestKeyCommitment(t *testing.T) {
	vault, object := id16("v"), id16("o")
	k1 := fixedKey(t, 1, vault, object)
	k2 := fixedKey(t, 2, vault, object)
	ct := encryptBytes(t, k1, plaintext(10, 1), segmentSize)
	if _, err := k2.Decrypt(bytes.NewReader(ct)); !errors.Is(err, ErrTampered) {
		t.Fatalf("other key: %v", err)
	}
	// Put k2's commitment in k1's payload: the header check passes for k2,
	// but the segments do not authenticate under k2.
	bad := bytes.Clone(ct)
	copy(bad[len(payloadMagic)+1:], k2.commit[:])
	if _, err := decryptAll(k2, bad, segmentSize); !errors.Is(err, ErrTampered) {
		t.Fatalf("swapped commitment: %v", err)
	}

	// A record wrapping (k1, commitment of k2) authenticates under the KEK
	// but must still be refused.
	ctx := context.Background()
	kek := seededKEK("test:kek-1", "one")
	md := testMD("v", "o")
	md.VaultID, md.ObjectID = vault, object
	pt := append(append(append([]byte{}, k1.key[:]...), k2.commit[:]...), appendMetadata(nil, &md)...)
	blob, err := kek.Encrypt(ctx, pt, recordAD(vault, object, kek.ID()))
	if err != nil {
		t.Fatal(err)
	}
	rec := append([]byte(recordMagic), Version, byte(len(kek.ID())))
	rec = append(rec, kek.ID()...)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(blob)))
	rec = append(rec, blob...)
	if _, _, err := Open(ctx, kek, vault, object, rec); !errors.Is(err, ErrTampered) {
		t.Fatalf("uncommitted key in record: %v", err)
	}
}

// noADKEK drops the associated data, as Tink's KMS envelope AEAD does. Open
// must still refuse a record for another object: the IDs inside the
// authenticated metadata are checked too.
type noADKEK struct{ *testKEK }

func (k noADKEK) Encrypt(ctx context.Context, pt, _ []byte) ([]byte, error) {
	return k.testKEK.Encrypt(ctx, pt, nil)
}

func (k noADKEK) Decrypt(ctx context.Context, ct, _ []byte) ([]byte, error) {
	return k.testKEK.Decrypt(ctx, ct, nil)
}

func TestOpenChecksIDsWhenKEKIgnoresAD(t *testing.T) {
	ctx := context.Background()
	kek := noADKEK{seededKEK("test:kek-1", "one")}
	md := testMD("vault-X", "object-A")
	rec, _, err := Seal(ctx, kek, md)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(ctx, kek, md.VaultID, md.ObjectID, rec); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][2][16]byte{{md.VaultID, id16("object-B")}, {id16("vault-Y"), md.ObjectID}} {
		if _, _, err := Open(ctx, kek, ids[0], ids[1], rec); !errors.Is(err, ErrTampered) {
			t.Fatalf("record opened as another object: %v", err)
		}
	}
}
