package envelope

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/idvault/idvault/kms"
)

const (
	recordMagic = "IDVK"
	// MaxRecordLen bounds a key record; Open refuses longer input before
	// looking at it. A record is ~400 bytes plus the KEK ID and the KEK's
	// ciphertext overhead.
	MaxRecordLen = 4096
	// MaxKEKIDLen is the longest KEK ID a record can carry.
	MaxKEKIDLen = 255

	recordADDomain = "idvault key record"
	dataKeyLen     = 32
	commitLen      = 32
	// wrappedLen is the length of the plaintext the KEK wraps.
	wrappedLen = dataKeyLen + commitLen + metadataLen
)

// Seal makes a fresh data key for md and returns the key record bytes and the
// Key that encrypts the object's payload. The caller stores the payload and
// indexes first and the record last (the commit point), and Destroys the Key
// when done.
func Seal(ctx context.Context, kek kms.KEK, md Metadata) (record []byte, k *Key, err error) {
	return seal(ctx, kek, md, rand.Reader)
}

// seal is Seal with the randomness injected, so the golden-vector generator
// can make a record with a known data key.
func seal(ctx context.Context, kek kms.KEK, md Metadata, rnd io.Reader) ([]byte, *Key, error) {
	k, err := newKey(rnd, md.VaultID, md.ObjectID)
	if err != nil {
		return nil, nil, err
	}
	rec, err := Reseal(ctx, kek, md, k)
	if err != nil {
		k.Destroy()
		return nil, nil, err
	}
	return rec, k, nil
}

// Reseal wraps an existing Key with new metadata (legal hold, KEK rotation)
// and returns the new key record. md.VaultID and md.ObjectID must equal the
// Key's; the payload is unchanged.
func Reseal(ctx context.Context, kek kms.KEK, md Metadata, k *Key) ([]byte, error) {
	if k == nil || !k.live {
		return nil, ErrKeyDestroyed
	}
	if md.VaultID != k.vaultID || md.ObjectID != k.objectID {
		return nil, fmt.Errorf("%w: vault or object ID differs from the key's", ErrInvalidMetadata)
	}
	if err := md.validate(); err != nil {
		return nil, err
	}
	kekID := kek.ID()
	if len(kekID) == 0 || len(kekID) > MaxKEKIDLen {
		return nil, fmt.Errorf("envelope: KEK ID length %d outside 1..%d", len(kekID), MaxKEKIDLen)
	}

	pt := make([]byte, 0, wrappedLen)
	pt = append(pt, k.key[:]...)
	pt = append(pt, k.commit[:]...)
	pt = appendMetadata(pt, &md)
	defer clear(pt)

	blob, err := kek.Encrypt(ctx, pt, recordAD(md.VaultID, md.ObjectID, kekID))
	if err != nil {
		return nil, fmt.Errorf("envelope: wrapping data key: %w", asUnavailable(err))
	}
	if len(blob) == 0 || len(blob) > MaxRecordLen {
		return nil, fmt.Errorf("envelope: KEK returned %d bytes of ciphertext", len(blob))
	}
	rec := make([]byte, 0, len(recordMagic)+1+1+len(kekID)+2+len(blob))
	rec = append(rec, recordMagic...)
	rec = append(rec, Version, byte(len(kekID)))
	rec = append(rec, kekID...)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(blob)))
	rec = append(rec, blob...)
	if len(rec) > MaxRecordLen {
		return nil, fmt.Errorf("envelope: record of %d bytes exceeds %d", len(rec), MaxRecordLen)
	}
	return rec, nil
}

// recordAD is the associated data of the wrapped blob. Every field is fixed
// width or length-prefixed, after a constant domain string, so distinct
// (version, vault, object, KEK) give distinct AD.
func recordAD(vaultID, objectID [16]byte, kekID string) []byte {
	ad := make([]byte, 0, len(recordADDomain)+1+16+16+1+len(kekID))
	ad = append(ad, recordADDomain...)
	ad = append(ad, Version)
	ad = append(ad, vaultID[:]...)
	ad = append(ad, objectID[:]...)
	ad = append(ad, byte(len(kekID)))
	return append(ad, kekID...)
}

// parseRecord splits a record's clear header. It reads every length only
// after checking it against what remains, and allocates nothing.
func parseRecord(record []byte) (kekID string, blob []byte, err error) {
	if len(record) > MaxRecordLen || len(record) < len(recordMagic)+1 {
		return "", nil, ErrTampered
	}
	if string(record[:len(recordMagic)]) != recordMagic {
		return "", nil, ErrTampered
	}
	if record[len(recordMagic)] != Version {
		return "", nil, ErrUnsupportedVersion
	}
	rest := record[len(recordMagic)+1:]
	if len(rest) < 1 {
		return "", nil, ErrTampered
	}
	n := int(rest[0])
	rest = rest[1:]
	if n == 0 || len(rest) < n+2 {
		return "", nil, ErrTampered
	}
	id := rest[:n]
	rest = rest[n:]
	m := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if m == 0 || len(rest) != m {
		return "", nil, ErrTampered
	}
	return string(id), rest, nil
}

// PeekKEKID returns the ID of the KEK that wrapped record, read from its
// clear header without unwrapping (rotation uses it to pick the old KEK). It
// fails with ErrTampered or ErrUnsupportedVersion like Open; a nil error
// does not mean the record is authentic.
func PeekKEKID(record []byte) (string, error) {
	id, _, err := parseRecord(record)
	return id, err
}

// Open parses record, checks its version and KEK ID, unwraps the data key
// with associated data binding it to (version, vaultID, objectID, KEK ID),
// decodes the metadata, checks that it names vaultID and objectID and checks
// the key commitment. Any failure of the record itself is ErrTampered (or
// ErrUnsupportedVersion, or ErrWrongKEK when kek.ID() differs from the
// record's); a KEK that fails for any reason other than kms.ErrDecrypt (KMS
// unreachable, throttled, hung until ctx ended, or an error this package
// does not know) is returned wrapping kms.ErrUnavailable, so an outage is
// never reported as tampering.
func Open(ctx context.Context, kek kms.KEK, vaultID, objectID [16]byte, record []byte) (Metadata, *Key, error) {
	kekID, blob, err := parseRecord(record)
	if err != nil {
		return Metadata{}, nil, err
	}
	if kekID != kek.ID() {
		return Metadata{}, nil, ErrWrongKEK
	}
	pt, err := kek.Decrypt(ctx, blob, recordAD(vaultID, objectID, kekID))
	if err != nil {
		if errors.Is(err, kms.ErrDecrypt) {
			return Metadata{}, nil, ErrTampered
		}
		return Metadata{}, nil, fmt.Errorf("envelope: unwrapping data key: %w", asUnavailable(err))
	}
	defer clear(pt)
	if len(pt) != wrappedLen {
		return Metadata{}, nil, ErrTampered
	}
	md, ok := decodeMetadata(pt[dataKeyLen+commitLen:])
	if !ok || md.VaultID != vaultID || md.ObjectID != objectID {
		return Metadata{}, nil, ErrTampered
	}
	k := &Key{vaultID: vaultID, objectID: objectID, live: true}
	copy(k.key[:], pt[:dataKeyLen])
	k.commit = commitment(&k.key)
	if subtle.ConstantTimeCompare(k.commit[:], pt[dataKeyLen:dataKeyLen+commitLen]) != 1 {
		k.Destroy()
		return Metadata{}, nil, ErrTampered
	}
	return md, k, nil
}

// asUnavailable makes a KEK failure that is not an authentication verdict
// match kms.ErrUnavailable: only kms.ErrDecrypt says anything about the
// record; every other failure (transport, ctx, an unknown KEK's own error)
// leaves the record's state unknown.
func asUnavailable(err error) error {
	if errors.Is(err, kms.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
}
