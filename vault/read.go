package vault

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/store"
)

// maxKeyRecord bounds what is read of a key record (envelope caps at 4 KiB).
const maxKeyRecord = 4 << 10

// loadRecord reads and opens the key record of id. It maps storage and
// envelope failures to the vault's sentinels; it does not check expiry, but
// where the legal hold decides it (the record says held, or the deadline
// has passed) md.LegalHold is the state resolved from the hold markers (see
// hold.go), and a state in doubt is errHoldInDoubt (which is ErrTampered).
func (v *Vault) loadRecord(ctx context.Context, id objectID) (envelope.Metadata, *envelope.Key, error) {
	b, err := getSmall(ctx, v.keys, keyRecordKey(id), maxKeyRecord)
	return v.loadFetchedRecord(ctx, id, b, err)
}

// loadFetchedRecord is loadRecord of a key record already read (b, or
// the error of reading it).
func (v *Vault) loadFetchedRecord(ctx context.Context, id objectID, b []byte, ferr error) (envelope.Metadata, *envelope.Key, error) {
	md, key, err := v.openFetchedRecord(ctx, id, b, ferr)
	if err != nil {
		return md, nil, err
	}
	if md.LegalHold || !v.now().Before(md.Expires) {
		held, err := v.resolveHold(ctx, id, md)
		if err != nil {
			key.Destroy()
			return envelope.Metadata{}, nil, err
		}
		md.LegalHold = held
	}
	return md, key, nil
}

// openRecord is loadRecord without the hold markers: the key record alone.
func (v *Vault) openRecord(ctx context.Context, id objectID) (envelope.Metadata, *envelope.Key, error) {
	b, err := getSmall(ctx, v.keys, keyRecordKey(id), maxKeyRecord)
	return v.openFetchedRecord(ctx, id, b, err)
}

func (v *Vault) openFetchedRecord(ctx context.Context, id objectID, b []byte, err error) (envelope.Metadata, *envelope.Key, error) {
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return envelope.Metadata{}, nil, fmt.Errorf("vault: object %s: %w", id, ErrNotFound)
		}
		return envelope.Metadata{}, nil, fmt.Errorf("vault: object %s: %w", id, err)
	}
	sys, _ := v.keyset()
	kek := v.kek
	if kekID, perr := envelope.PeekKEKID(b); perr == nil {
		kek = kekFor(v.kek, kekID) // a record not yet (or already) rewrapped
	}
	md, key, err := envelope.Open(ctx, kek, sys.vaultID, id, b)
	if err != nil {
		return envelope.Metadata{}, nil, fmt.Errorf("vault: object %s: %w", id, mapEnvelopeErr(err))
	}
	return md, key, nil
}

// mapEnvelopeErr maps envelope and KEK failures to the vault's sentinels.
// An unreachable KEK (kms.ErrUnavailable) is ErrKEKUnavailable, never
// ErrTampered: nothing is known about the record then.
func mapEnvelopeErr(err error) error {
	switch {
	case errors.Is(err, kms.ErrUnavailable):
		return fmt.Errorf("%w: %w", ErrKEKUnavailable, err)
	case errors.Is(err, envelope.ErrWrongKEK):
		return errors.Join(ErrWrongKEK, ErrTampered)
	case errors.Is(err, envelope.ErrTampered), errors.Is(err, envelope.ErrUnsupportedVersion):
		return ErrTampered
	}
	return err
}

// expired reports whether md is past its expiry now. A held
// object never expires.
func (v *Vault) expired(md envelope.Metadata) bool {
	return !md.LegalHold && !v.now().Before(md.Expires)
}

// openObject is the vault's internal read path: it checks the key record
// and expiry and streams the plaintext. Public retrieval goes through
// Grant and Redeem only.
func (v *Vault) openObject(ctx context.Context, id objectID) (io.ReadCloser, Info, error) {
	md, key, err := v.loadRecord(ctx, id)
	if err != nil {
		return nil, Info{}, err
	}
	if v.expired(md) {
		key.Destroy()
		return nil, Info{}, fmt.Errorf("vault: object %s: %w", id, ErrExpired)
	}
	blob, err := v.st.Get(ctx, blobKey(id))
	if err != nil {
		key.Destroy()
		if errors.Is(err, store.ErrNotFound) {
			return nil, Info{}, fmt.Errorf("vault: payload of %s: %w", id, ErrNotFound)
		}
		return nil, Info{}, fmt.Errorf("vault: payload of %s: %w", id, err)
	}
	r, err := newPlainReader(blob, key, md.Size)
	if err != nil {
		return nil, Info{}, fmt.Errorf("vault: payload of %s: %w", id, err)
	}
	return r, infoOf(md), nil
}

// plainReader decrypts a payload and checks that exactly size bytes come
// out; every authentication failure surfaces as ErrTampered.
type plainReader struct {
	blob io.ReadCloser
	key  *envelope.Key
	dec  io.Reader
	size int64
	n    int64
	err  error
}

func newPlainReader(blob io.ReadCloser, key *envelope.Key, size int64) (*plainReader, error) {
	dec, err := key.Decrypt(blob)
	if err != nil {
		blob.Close()
		key.Destroy()
		return nil, mapEnvelopeErr(err)
	}
	return &plainReader{blob: blob, key: key, dec: dec, size: size}, nil
}

func (p *plainReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.dec.Read(b)
	p.n += int64(n)
	switch {
	case p.n > p.size:
		p.err = fmt.Errorf("vault: payload longer than recorded: %w", ErrTampered)
		return 0, p.err
	case err == io.EOF && p.n != p.size:
		p.err = fmt.Errorf("vault: payload shorter than recorded: %w", ErrTampered)
		return n, p.err
	case err != nil && err != io.EOF:
		if errors.Is(err, envelope.ErrTampered) {
			err = ErrTampered
		}
		p.err = fmt.Errorf("vault: read payload: %w", err)
		return n, p.err
	}
	return n, err
}

func (p *plainReader) Close() error {
	p.key.Destroy()
	return p.blob.Close()
}

// readHead reads and authenticates the first n bytes of plaintext (all of
// it, to its verified end, when the document is no longer than n) and
// returns them; nothing is released yet. Its errors are Read's.
func (p *plainReader) readHead(n int) ([]byte, error) {
	whole := p.size <= int64(n)
	if whole {
		n = int(p.size)
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(p, head); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("vault: payload shorter than recorded: %w", ErrTampered)
		}
		return nil, err
	}
	if whole {
		// Reach the authenticated end (the last segment's tag).
		var one [1]byte
		if m, err := p.Read(one[:]); m != 0 || err != io.EOF {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("vault: payload longer than recorded: %w", ErrTampered)
			}
			return nil, err
		}
	}
	return head, nil
}
