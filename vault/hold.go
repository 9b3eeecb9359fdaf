package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/vault/store"
)

// Legal hold state.
//
// The key record's LegalHold flag alone can be rolled back by anyone who
// can write the store: put back the record copied before Hold and the hold
// is gone; put back the held copy after Release and the document never
// expires. So every Hold and Release also writes a hold marker,
// holds/<id>/<seq>, create-only and write-once (object lock on S3, for
// DefaultAuditRetention), whose body is MACed with a key from the vault's
// keyset: nobody without the KEK can forge one, and nobody can overwrite or
// (where object lock holds) delete one. A decision that depends on the hold
// (Sweep, Delete, EraseSubject, and Grant/Redeem past the deadline) takes
// the latest valid marker and the key record's flag:
//
//   - no marker: the record's flag (documents never held, and holds placed
//     before markers existed);
//   - marker and record agree: that state;
//   - they disagree, or a marker does not verify: errHoldInDoubt. The
//     document is neither shredded nor served past its deadline, Sweep
//     reports it (SweepReport.Unknown) and raises AlertTampered. A Hold or
//     Release that crashed between its marker and its record ends in this
//     state too; repeating the call settles it.
//
// Restoring an older key record therefore changes nothing: its flag
// disagrees with the latest marker. What remains: an attacker who can
// delete a marker (a filesystem store, or a bucket without object lock)
// and restore the matching record at once; the audit log still holds the
// Hold and Release records.
//
// The store's own expiry (store.ExpiryTagger: on S3 the lifecycle
// backstop, which matches payloads tagged idvault-expire=yes) knows nothing
// of markers, so Hold and Release also switch the payload's tag, after the
// marker and the record (setExpirable in retention.go). A Hold whose tag
// update fails returns ExpiryTagError; repeating it settles the tag.

// errHoldInDoubt: the hold markers and the key record disagree (a rollback,
// a forged marker, or an interrupted Hold/Release).
var errHoldInDoubt = fmt.Errorf("vault: legal hold state in doubt (hold markers and key record disagree): %w", ErrTampered)

const (
	holdPrefix     = "holds/"
	holdMarkerV1   = 1
	holdMarkerLen  = 1 + 1 + 8 + 8 + sha256.Size
	maxHoldMarkers = 1024 // a document's hold history; beyond it the state is in doubt
)

func holdMarkerKey(id objectID, seq uint64) string {
	return holdPrefix + id.String() + "/" + fmt.Sprintf("%020d", seq)
}

func (s *systemKeys) holdMAC(id objectID, seq uint64, held bool, at int64) []byte {
	m := hmac.New(sha256.New, s.indexKey)
	m.Write([]byte("idvault hold marker v1\x00"))
	m.Write(s.vaultID[:])
	m.Write(id[:])
	var b [17]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	if held {
		b[8] = 1
	}
	binary.BigEndian.PutUint64(b[9:], uint64(at))
	m.Write(b[:])
	return m.Sum(nil)
}

func (s *systemKeys) holdMarker(id objectID, seq uint64, held bool, at time.Time) []byte {
	b := make([]byte, 0, holdMarkerLen)
	b = append(b, holdMarkerV1)
	if held {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	return append(b, s.holdMAC(id, seq, held, at.UnixNano())...)
}

// parseHoldMarker checks a marker's body against its id and seq.
func (s *systemKeys) parseHoldMarker(id objectID, seq uint64, b []byte) (held, ok bool) {
	if len(b) != holdMarkerLen || b[0] != holdMarkerV1 || b[1] > 1 || binary.BigEndian.Uint64(b[2:10]) != seq {
		return false, false
	}
	held = b[1] == 1
	at := int64(binary.BigEndian.Uint64(b[10:18]))
	return held, hmac.Equal(b[18:], s.holdMAC(id, seq, held, at))
}

// holdHistory is what the markers of one document say.
type holdHistory struct {
	n      int    // markers found
	maxSeq uint64 // highest sequence number among marker names (valid or not)
	latest uint64 // sequence number of the latest valid marker (0: none)
	held   bool   // its state
	bad    bool   // a marker did not verify, or there were too many
}

func (v *Vault) holdHistory(ctx context.Context, id objectID) (holdHistory, error) {
	sys, _ := v.keyset()
	var h holdHistory
	prefix := holdPrefix + id.String() + "/"
	for k, err := range v.st.List(ctx, prefix) {
		if err != nil {
			return h, fmt.Errorf("vault: hold markers of %s: %w", id, err)
		}
		h.n++
		if h.n > maxHoldMarkers {
			h.bad = true
			break
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(k, prefix), 10, 64)
		if err != nil || seq == 0 {
			h.bad = true
			continue
		}
		h.maxSeq = max(h.maxSeq, seq)
		b, err := getSmall(ctx, v.st, k, holdMarkerLen+1)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return h, fmt.Errorf("vault: hold markers of %s: %w", id, err)
		}
		held, ok := sys.parseHoldMarker(id, seq, b)
		if !ok {
			h.bad = true
			continue
		}
		if seq > h.latest {
			h.latest, h.held = seq, held
		}
	}
	return h, nil
}

// resolveHold returns whether id is under legal hold, from its markers and
// md (its key record); see the comment at the top of this file.
func (v *Vault) resolveHold(ctx context.Context, id objectID, md envelope.Metadata) (bool, error) {
	h, err := v.holdHistory(ctx, id)
	if err != nil {
		return false, err
	}
	switch {
	case h.bad:
		return false, fmt.Errorf("vault: object %s: %w", id, errHoldInDoubt)
	case h.latest == 0 && h.n == 0:
		return md.LegalHold, nil
	case h.latest == 0 || h.held != md.LegalHold:
		return false, fmt.Errorf("vault: object %s: %w", id, errHoldInDoubt)
	}
	return h.held, nil
}

// writeHoldMarker creates the next marker of id, create-only and
// write-once; a concurrent Hold/Release that took the same number makes it
// try the next one.
func (v *Vault) writeHoldMarker(ctx context.Context, id objectID, held bool) error {
	sys, _ := v.keyset()
	for range 3 {
		h, err := v.holdHistory(ctx, id)
		if err != nil {
			return err
		}
		body := sys.holdMarker(id, h.maxSeq+1, held, v.now())
		opts := store.PutOptions{IfAbsent: true}
		if v.cfg.AuditRetention > 0 {
			opts.RetainUntil = v.now().Add(v.cfg.AuditRetention)
		}
		key := holdMarkerKey(id, h.maxSeq+1)
		err = v.st.Put(ctx, key, bytes.NewReader(body), int64(len(body)), opts)
		if errors.Is(err, store.ErrRetentionUnsupported) {
			opts.RetainUntil = time.Time{}
			err = v.st.Put(ctx, key, bytes.NewReader(body), int64(len(body)), opts)
		}
		if errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("vault: hold marker of %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("vault: hold marker of %s: concurrent hold changes: %w", id, store.ErrExists)
}

// deleteHoldMarkers removes id's markers after a shred, where the store
// allows it (write-once markers stay until their retention ends; they hold
// no personal data, only the object ID, a number and a time, and Sweep
// collects them later).
func (v *Vault) deleteHoldMarkers(ctx context.Context, id objectID) {
	for k, err := range v.st.List(ctx, holdPrefix+id.String()+"/") {
		if err != nil {
			return
		}
		_ = v.st.Delete(ctx, k)
	}
}
