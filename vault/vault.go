package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Defaults for the zero values of Config.
const (
	DefaultRetention   = 72 * time.Hour
	DefaultMaxSize     = 25 << 20
	DefaultGrantTTL    = 60 * time.Second
	DefaultMaxGrantTTL = 5 * time.Minute
	DefaultLeeway      = 2 * time.Second
	MaxLeeway          = 5 * time.Second
	// DefaultAuditRetention is how long audit batches are write-once
	// (object lock on S3, best effort on a filesystem).
	DefaultAuditRetention = 400 * 24 * time.Hour
)

// Config configures a Vault. Store and KEK are required; every other zero
// value means the documented default.
type Config struct {
	// Store holds payloads, indexes, the single-use ledger, the audit log
	// and the vault's own wrapped keyset. Required.
	Store store.Store
	// KEK wraps every data key and the vault's keyset. Required.
	KEK kms.KEK
	// DecryptKEKs open key records and a keyset wrapped under them, chosen
	// by the KEK ID in each record's clear header; they never wrap
	// anything. During a KEK migration (Vault.Rewrap) every instance lists
	// the KEK it does not wrap with, so that no object is unreadable at any
	// moment. Nil: only KEK.
	DecryptKEKs []kms.KEK
	// KeyStore, if set, holds the key records (keys/<id>) instead of Store.
	// Keep it unversioned and out of backups: deleting a key record then
	// shreds the object even where copies of its ciphertext survive.
	KeyStore store.Store

	// Retention is how long a document is kept after Put (default 72 h).
	Retention time.Duration
	// MaxRetention bounds Document.Retention overrides (default: Retention,
	// so an override can only shorten).
	MaxRetention time.Duration
	// MaxSize is the largest accepted document in bytes (default 25 MiB).
	MaxSize int64
	// MaxGrantTTL caps Access.TTL (default 5 min).
	MaxGrantTTL time.Duration
	// ClockLeeway is the tolerance for clock skew between instances when
	// checking token expiry (default 2 s, at most 5 s).
	ClockLeeway time.Duration
	// AuditRetention is how long audit batches stay write-once
	// (default 400 days; negative disables object lock on audit objects).
	AuditRetention time.Duration

	// SweepEvery, if positive, runs Sweep in the background at that
	// interval until Close. Errors go to OnSweepError.
	SweepEvery time.Duration
	// SweepPrincipal is the actor the background sweeps record (default
	// DefaultSweepPrincipal).
	SweepPrincipal string
	// OnSweepError receives background Sweep errors (optional).
	OnSweepError func(error)
	// OrphanGrace is how long a payload may exist without a key record
	// before Sweep collects it (default 1 h; a Put in flight has none yet).
	OrphanGrace time.Duration
	// AllowVersionedKeyStore accepts a key store with object versioning.
	// Off by default: on a versioned bucket "deleting" a key record keeps
	// an old version, so nothing is shredded.
	AllowVersionedKeyStore bool

	// Quota bounds each principal's grants and redemptions (zero fields:
	// the documented defaults, 200 distinct documents an hour).
	Quota Quota
	// QuotaFor, if set, gives the quota of a principal (per class:
	// reviewers, auditors, batch jobs); it overrides Quota.
	QuotaFor func(principal string) Quota
	// Limiter keeps the quota counts (default: in-process). Give all
	// instances one shared Limiter to enforce quotas cluster-wide.
	Limiter Limiter
	// OnAlert is called, synchronously, for every alert (quota exceeded,
	// bulk access, refusal burst, canary touched); each is also audited.
	OnAlert func(Alert)
	// FreezeOnAlert refuses every further grant and redemption of a
	// principal that raised an alert, until an audited Unfreeze.
	FreezeOnAlert bool

	// Now is the clock (default time.Now). Tests inject one.
	Now func() time.Time
}

// Vault stores identity documents encrypted and releases them only through
// single-use tokens, auditing every access first. A Vault is safe for
// concurrent use; any number of Vaults (processes, machines) may share one
// Store.
type Vault struct {
	cfg    Config
	st     store.Store
	keys   store.Store
	kek    kms.KEK
	now    func() time.Time
	log    *audit.Appender
	closed chan struct{}
	once   sync.Once

	sweeperDone chan struct{}
	instance    [16]byte // random per Vault: whose sweep claim is whose

	limiter Limiter

	mu      sync.RWMutex // guards sys and sealer (token-key rotation)
	sys     *systemKeys
	sealer  *token.Sealer
	lastRld time.Time
}

// Open opens the vault kept in cfg.Store, creating its keyset on first use.
// It fails with ErrWrongKEK when the keyset was wrapped by another KEK.
func Open(ctx context.Context, cfg Config) (*Vault, error) {
	if cfg.Store == nil || cfg.KEK == nil {
		return nil, fmt.Errorf("vault: open: Store and KEK are required: %w", ErrInvalidArgument)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MaxRetention <= 0 {
		cfg.MaxRetention = cfg.Retention
	}
	if cfg.MaxRetention < cfg.Retention {
		return nil, fmt.Errorf("vault: open: MaxRetention below Retention: %w", ErrInvalidArgument)
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.MaxGrantTTL <= 0 {
		cfg.MaxGrantTTL = DefaultMaxGrantTTL
	}
	if cfg.ClockLeeway == 0 {
		cfg.ClockLeeway = DefaultLeeway
	}
	if cfg.ClockLeeway < 0 || cfg.ClockLeeway > MaxLeeway {
		return nil, fmt.Errorf("vault: open: ClockLeeway must be within 0..5s: %w", ErrInvalidArgument)
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = DefaultAuditRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepPrincipal == "" {
		cfg.SweepPrincipal = DefaultSweepPrincipal
	}
	v := &Vault{cfg: cfg, st: cfg.Store, keys: cfg.KeyStore, kek: newKEKRing(cfg.KEK, cfg.DecryptKEKs), now: cfg.Now, closed: make(chan struct{})}
	if v.keys == nil {
		v.keys = cfg.Store
	}
	if _, err := rand.Read(v.instance[:]); err != nil {
		return nil, err
	}
	v.limiter = cfg.Limiter
	if v.limiter == nil {
		v.limiter = NewMemoryLimiter()
	}
	if err := checkUnversioned(ctx, v.keys, cfg.AllowVersionedKeyStore); err != nil {
		return nil, err
	}
	sys, err := loadOrCreateSystemKeys(ctx, v.st, v.kek)
	if err != nil {
		return nil, err
	}
	if err := v.installKeys(sys); err != nil {
		return nil, err
	}
	retain := cfg.AuditRetention
	if retain < 0 {
		retain = 0
	}
	v.log, err = audit.NewAppender(ctx, v.st, sys.auditSigner, audit.AppenderOptions{RetainFor: retain, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("vault: open audit log: %w", errors.Join(ErrAuditUnavailable, err))
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventOpen, Outcome: audit.OutcomeOK}); err != nil {
		return nil, err
	}
	if cfg.SweepEvery > 0 {
		v.sweeperDone = make(chan struct{})
		go v.sweepLoop(cfg.SweepEvery)
	}
	return v, nil
}

// versioner is implemented by stores that can tell whether they keep old
// versions of deleted objects (s3store).
type versioner interface {
	Versioned(ctx context.Context) (bool, error)
}

func checkUnversioned(ctx context.Context, st store.Store, allow bool) error {
	vs, ok := st.(versioner)
	if !ok || allow {
		return nil
	}
	on, err := vs.Versioned(ctx)
	if err != nil {
		return fmt.Errorf("vault: open: checking key store versioning: %w", err)
	}
	if on {
		return fmt.Errorf("vault: open: the key store keeps object versions, so deleting a key record would not shred it; "+
			"put key records in an unversioned bucket (Config.KeyStore): %w", ErrInvalidArgument)
	}
	return nil
}

func (v *Vault) sweepLoop(every time.Duration) {
	defer close(v.sweeperDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-v.closed:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every*4)
			_, err := v.Sweep(ctx, Actor{Principal: v.cfg.SweepPrincipal, Reason: "Config.SweepEvery"})
			cancel()
			if err != nil && !errors.Is(err, ErrClosed) && v.cfg.OnSweepError != nil {
				v.cfg.OnSweepError(err)
			}
		}
	}
}

func (v *Vault) installKeys(sys *systemKeys) error {
	s, err := token.NewSealer(sys.tokens, sys.vaultID)
	if err != nil {
		return fmt.Errorf("vault: token key: %w", err)
	}
	v.mu.Lock()
	v.sys, v.sealer = sys, s
	v.mu.Unlock()
	return nil
}

func (v *Vault) keyset() (*systemKeys, *token.Sealer) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.sys, v.sealer
}

// ID returns the vault's identifier (hex). It is not secret.
func (v *Vault) ID() string {
	sys, _ := v.keyset()
	return hex.EncodeToString(sys.vaultID[:])
}

// AuditVerifierKey returns the public key that verifies the signed
// checkpoints of this vault's audit log (a golang.org/x/mod/sumdb/note
// verifier key). Pin it outside the store: anyone who can write the store
// can replace the copy published under system/.
func (v *Vault) AuditVerifierKey() string {
	sys, _ := v.keyset()
	return sys.auditVerifier
}

// Close writes the audit log's final signed checkpoint. The Vault refuses
// every call after Close.
func (v *Vault) Close(ctx context.Context) error {
	var err error
	v.once.Do(func() {
		close(v.closed)
		if v.sweeperDone != nil {
			<-v.sweeperDone
		}
		err = v.log.Close(ctx)
	})
	return err
}

func (v *Vault) isClosed() bool {
	select {
	case <-v.closed:
		return true
	default:
		return false
	}
}

// objectID is a 128-bit random object identifier.
type objectID [16]byte

func newObjectID() (objectID, error) {
	var id objectID
	_, err := rand.Read(id[:])
	return id, err
}

func (id objectID) String() string { return hex.EncodeToString(id[:]) }

// parseObjectID accepts exactly 32 lowercase hex digits.
func parseObjectID(s string) (objectID, error) {
	var id objectID
	if len(s) != 32 {
		return id, fmt.Errorf("vault: malformed object ID: %w", ErrNotFound)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return id, fmt.Errorf("vault: malformed object ID: %w", ErrNotFound)
		}
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

func keyRecordKey(id objectID) string { return "keys/" + id.String() }
func blobKey(id objectID) string      { return "blobs/" + id.String() }
func expiryIndexKey(expires time.Time, id objectID) string {
	return "index/expiry/" + expires.UTC().Format("2006010215") + "/" + id.String()
}
func subjectIndexKey(mac []byte, id objectID) string {
	return "index/subject/" + hex.EncodeToString(mac) + "/" + id.String()
}
