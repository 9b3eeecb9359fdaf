package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

const (
	systemKeysetKey   = "system/keyset"
	auditVerifierPath = "system/audit-verifier"
	systemMagic       = "IDVS"
	systemVersion     = 1
	maxSystemObject   = 64 << 10
)

// systemKeys is the vault's own keyset, created at first Open and stored
// under system/keyset wrapped by the KEK.
type systemKeys struct {
	vaultID       [16]byte
	indexKey      []byte // HMAC key for subject indexes
	auditSigner   string // note private key
	auditVerifier string // note public key
	tokens        *keyset.Handle
}

// String redacts: a systemKeys must never be printed.
func (*systemKeys) String() string { return "vault.systemKeys{REDACTED}" }

// subjectMAC is the keyed hash that stands for a subject everywhere on
// storage and in the audit log.
func (s *systemKeys) subjectMAC(subject string) []byte {
	m := hmac.New(sha256.New, s.indexKey)
	m.Write([]byte("idvault subject v1\x00"))
	m.Write([]byte(subject))
	return m.Sum(nil)
}

func newSystemKeys() (*systemKeys, error) {
	s := &systemKeys{indexKey: make([]byte, 32)}
	if _, err := rand.Read(s.vaultID[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(s.indexKey); err != nil {
		return nil, err
	}
	var err error
	name := "idvault-audit-" + hex.EncodeToString(s.vaultID[:8])
	if s.auditSigner, s.auditVerifier, err = audit.GenerateKey(name); err != nil {
		return nil, err
	}
	if s.tokens, err = token.NewKeyset(); err != nil {
		return nil, err
	}
	return s, nil
}

// systemAD binds the wrapped keyset to its format and KEK.
func systemAD(kekID string) []byte {
	var b bytes.Buffer
	b.WriteString(systemMagic)
	b.WriteByte(systemVersion)
	writeLP(&b, []byte(kekID))
	return b.Bytes()
}

// marshal encodes and wraps the keyset:
// magic | version | len kekID | kekID | KEK.Encrypt(plaintext, AD=header).
// The plaintext holds the token keyset in Tink's cleartext serialization;
// it exists only in memory and is sealed by the KEK before it is stored.
func (s *systemKeys) marshal(ctx context.Context, kek kms.KEK) ([]byte, error) {
	var tk bytes.Buffer
	if err := insecurecleartextkeyset.Write(s.tokens, keyset.NewBinaryWriter(&tk)); err != nil {
		return nil, err
	}
	var pt bytes.Buffer
	pt.Write(s.vaultID[:])
	writeLP(&pt, s.indexKey)
	writeLP(&pt, []byte(s.auditSigner))
	writeLP(&pt, []byte(s.auditVerifier))
	writeLP(&pt, tk.Bytes())
	defer clear(pt.Bytes())
	defer clear(tk.Bytes())
	ad := systemAD(kek.ID())
	ct, err := kek.Encrypt(ctx, pt.Bytes(), ad)
	if err != nil {
		return nil, fmt.Errorf("vault: wrap keyset: %w", err)
	}
	return append(ad, ct...), nil
}

func unmarshalSystemKeys(ctx context.Context, kek kms.KEK, b []byte) (*systemKeys, error) {
	corrupt := func(what string) error {
		return fmt.Errorf("vault: system keyset: %s: %w", what, ErrTampered)
	}
	if len(b) < len(systemMagic)+2 || string(b[:4]) != systemMagic {
		return nil, corrupt("bad magic")
	}
	if b[4] != systemVersion {
		return nil, corrupt("unsupported version")
	}
	r := bytes.NewReader(b[5:])
	kekID, err := readLP(r, 1024)
	if err != nil {
		return nil, corrupt("bad header")
	}
	kek = kekFor(kek, string(kekID)) // Config.Storage.DecryptKEKs during a migration
	if string(kekID) != kek.ID() {
		return nil, fmt.Errorf("vault: keyset wrapped by KEK %q, have %q: %w", sanitize(string(kekID)), sanitize(kek.ID()), ErrWrongKEK)
	}
	ad := b[:len(b)-r.Len()]
	pt, err := kek.Decrypt(ctx, b[len(ad):], ad)
	if err != nil {
		if errors.Is(err, kms.ErrDecrypt) {
			return nil, fmt.Errorf("vault: cannot unwrap keyset: %w", ErrWrongKEK)
		}
		return nil, fmt.Errorf("vault: unwrap keyset: %w: %w", ErrKEKUnavailable, err)
	}
	defer clear(pt)
	s := &systemKeys{}
	pr := bytes.NewReader(pt)
	if _, err := io.ReadFull(pr, s.vaultID[:]); err != nil {
		return nil, corrupt("short")
	}
	var signer, verifier, tk []byte
	if s.indexKey, err = readLP(pr, 64); err != nil || len(s.indexKey) != 32 {
		return nil, corrupt("index key")
	}
	if signer, err = readLP(pr, 4096); err != nil {
		return nil, corrupt("audit key")
	}
	if verifier, err = readLP(pr, 4096); err != nil {
		return nil, corrupt("audit key")
	}
	if tk, err = readLP(pr, maxSystemObject); err != nil || pr.Len() != 0 {
		return nil, corrupt("token keyset")
	}
	s.auditSigner, s.auditVerifier = string(signer), string(verifier)
	if s.tokens, err = insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(tk))); err != nil {
		return nil, corrupt("token keyset")
	}
	return s, nil
}

// loadOrCreateSystemKeys loads system/keyset, or creates it if absent. Two
// instances opening a new vault at once race on a create-only write; the
// loser loads the winner's keyset.
func loadOrCreateSystemKeys(ctx context.Context, st store.Store, kek kms.KEK) (*systemKeys, error) {
	for attempt := 0; attempt < 2; attempt++ {
		b, err := getSmall(ctx, st, systemKeysetKey, maxSystemObject)
		if err == nil {
			return unmarshalSystemKeys(ctx, kek, b)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("vault: load keyset: %w", err)
		}
		sys, err := newSystemKeys()
		if err != nil {
			return nil, fmt.Errorf("vault: new keyset: %w", err)
		}
		enc, err := sys.marshal(ctx, kek)
		if err != nil {
			return nil, err
		}
		err = st.Put(ctx, systemKeysetKey, bytes.NewReader(enc), int64(len(enc)), store.PutOptions{IfAbsent: true})
		if errors.Is(err, store.ErrExists) {
			continue // another instance created it first
		}
		if err != nil {
			return nil, fmt.Errorf("vault: store keyset: %w", err)
		}
		// The verifier key is public; publishing it lets `idvault audit
		// verify` work without flags. A pinned copy is stronger.
		pub := []byte(sys.auditVerifier + "\n")
		if err := st.Put(ctx, auditVerifierPath, bytes.NewReader(pub), int64(len(pub)), store.PutOptions{IfAbsent: true}); err != nil && !errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("vault: publish audit key: %w", err)
		}
		return sys, nil
	}
	return nil, fmt.Errorf("vault: keyset creation raced twice: %w", ErrInvalidArgument)
}

// getSmall reads a whole small object, refusing more than max bytes.
func getSmall(ctx context.Context, st store.Store, key string, max int64) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("vault: object %s over %d bytes: %w", key, max, ErrTampered)
	}
	return b, nil
}

func writeLP(b *bytes.Buffer, p []byte) {
	var n [binary.MaxVarintLen64]byte
	b.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
	b.Write(p)
}

func readLP(r *bytes.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(max) || n > uint64(r.Len()) {
		return nil, errors.New("bad length")
	}
	p := make([]byte, n)
	_, err = io.ReadFull(r, p)
	return p, err
}

// sanitize keeps printable ASCII of a non-secret identifier for messages.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
