package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/store"
)

// Defaults for the zero values of Config, and the limits the vault keeps
// whatever it is configured with.
const (
	DefaultRetention   = 72 * time.Hour
	DefaultMaxSize     = 25 << 20
	DefaultGrantTTL    = 60 * time.Second
	DefaultMaxGrantTTL = 5 * time.Minute
	DefaultLeeway      = 2 * time.Second
	MaxLeeway          = 5 * time.Second
	// MaxGrantTTLLimit bounds Config.Access.MaxGrantTTL: token keys are retired,
	// and ledger notes collected, on the assumption that no token lives
	// longer.
	MaxGrantTTLLimit = time.Hour
	// DefaultAuditRetention is how long audit batches are write-once
	// (object lock on S3, best effort on a filesystem).
	DefaultAuditRetention = 400 * 24 * time.Hour
	// DefaultCanaryRate is Config.Detection.CanaryRate's default: one canary subject per
	// 40 uploading subjects, and one canary per 40 listed documents.
	DefaultCanaryRate = 40
	// DefaultMaxStreams is Config.Access.MaxStreamsPerPrincipal's default.
	DefaultMaxStreams = 8
	// DefaultRewrapWorkers is how many key records Rewrap re-wraps at once when
	// RewrapOptions.Workers is zero: enough to overlap KMS round trips.
	DefaultRewrapWorkers = 8
	// DefaultRole is the role ListSubject reports for every viewer when
	// Config.Access.RoleOf is nil.
	DefaultRole = "staff"
	// DefaultSweepPrincipal is the actor recorded for background sweeps
	// (Config.Retention.SweepEvery) when Config.Retention.SweepPrincipal is empty.
	DefaultSweepPrincipal = "idvault:sweep-every"
	// DecideWindow is how long after a redemption its principal may decide
	// about the document (Vault.Decide); Config.Access.DecideWithoutView names those
	// who may decide without one.
	DecideWindow = time.Hour
	// MaxRefusalFloor bounds the adaptive refusal floor: a store slower than
	// this makes refusal timing leak again, but a hung store cannot make every
	// refusal hang.
	MaxRefusalFloor = 5 * time.Second
	// RedeemAuthBytes is how much of a document's plaintext Redeem
	// authenticates before it spends the token: the first 16 KiB (the first
	// one or two 16 KiB ciphertext segments), or the whole document when it
	// is smaller.
	RedeemAuthBytes = 16 << 10
)

// Config configures a Vault. Store and KEK are required; every other zero
// value means the documented default.
type Config struct {
	// Store holds payloads, indexes, the single-use ledger, the audit log
	// and the vault's own wrapped keyset. Required.
	Store store.Store
	// KEK wraps every data key and the vault's keyset. Required.
	KEK kms.KEK

	// Storage: where key records live, which KEKs may open them, and how large
	// a document may be.
	Storage StorageConfig

	// Retention: how long documents are kept, and the sweeps that delete them.
	Retention RetentionConfig

	// Access: how long a grant may live, the clock skew tolerated, who may
	// decide, and how staff are named to a member.
	Access AccessConfig

	// Detection: quotas, their shared counts, alerts, canaries and freezing.
	Detection DetectionConfig

	// Audit: how long the audit log is write-once, and whether Open insists on
	// it.
	Audit AuditConfig

	// Observability: logs and metrics.
	Observability ObservabilityConfig

	// Now is the clock (default time.Now). Tests inject one.
	Now func() time.Time
}

// StorageConfig is Config.Storage: where key records live, which KEKs may
// open them, and how large a document may be. Its zero value is the safe
// default.
type StorageConfig struct {
	// KeyStore, if set, holds the key records (keys/<id>) instead of Store.
	// Keep it unversioned and out of backups: deleting a key record then
	// shreds the object even where copies of its ciphertext survive.
	KeyStore store.Store

	// DecryptKEKs open key records and a keyset wrapped under them, chosen
	// by the KEK ID in each record's clear header; they never wrap
	// anything. During a KEK migration (Admin.Rewrap) every instance lists
	// the KEK it does not wrap with, so that no object is unreadable at any
	// moment. Nil: only KEK.
	DecryptKEKs []kms.KEK

	// AllowVersionedKeyStore accepts a key store with object versioning.
	// Off by default: on a versioned bucket "deleting" a key record keeps
	// an old version, so nothing is shredded.
	AllowVersionedKeyStore bool

	// MaxSize is the largest accepted document in bytes (default 25 MiB).
	MaxSize int64
}

// RetentionConfig is Config.Retention: how long documents are kept, and the
// sweeps that delete them. Its zero value is the safe default.
type RetentionConfig struct {
	// Period is how long a document is kept after Put (default 72 h).
	Period time.Duration

	// Max bounds Document.Retention overrides (default: Period,
	// so an override can only shorten).
	Max time.Duration

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
}

// AccessConfig is Config.Access: how long a grant may live, the clock skew
// tolerated, who may decide, and how staff are named to a member. Its zero
// value is the safe default.
type AccessConfig struct {
	// MaxGrantTTL is the longest Access.TTL Grant accepts (default 5 min,
	// at most MaxGrantTTLLimit); Grant refuses a longer TTL.
	MaxGrantTTL time.Duration

	// ClockLeeway is the tolerance for clock skew between instances when
	// checking token expiry (default 2 s, at most 5 s).
	ClockLeeway time.Duration

	// MaxStreamsPerPrincipal bounds the redemption streams one principal
	// may have open at once (default DefaultMaxStreams); Redeem refuses
	// more with ErrQuotaExceeded, before spending the token.
	MaxStreamsPerPrincipal int

	// DecideWithoutView reports whether principal may Decide about
	// documents it has not redeemed a token for within DecideWindow (a
	// supervisor closing a queue, a batch job). Nil: nobody may.
	DecideWithoutView func(principal string) bool

	// RoleOf names the role of a principal in ListSubject's answer, which
	// tells a member how often each role viewed a document without naming
	// the staff (nil: every principal is DefaultRole).
	RoleOf func(principal string) string
}

// DetectionConfig is Config.Detection: quotas, their shared counts, alerts,
// canaries and freezing. Its zero value is the safe default.
type DetectionConfig struct {
	// Quota bounds each principal's grants and redemptions (zero fields:
	// the documented defaults, 200 distinct documents an hour).
	Quota Quota

	// QuotaFor, if set, gives the quota of a principal (per class:
	// reviewers, auditors, batch jobs); it overrides Quota.
	QuotaFor func(principal string) Quota

	// Limiter keeps the quota and alert counts (default: NewStoreLimiter
	// on Store, shared by every instance on the store). An in-process
	// NewMemoryLimiter is refused while other instances are live on the
	// store, unless AllowLocalLimiter.
	Limiter Limiter

	// AllowLocalLimiter opts out of shared counts: Open accepts an
	// in-process Limiter even when other instances use the store.
	AllowLocalLimiter bool

	// OnAlert is called, synchronously, for every alert (quota exceeded,
	// bulk access, refusal burst, canary touched); each is also audited.
	OnAlert func(Alert)

	// CanaryRate sets how many canaries the vault plants and lists: it
	// shadows one in CanaryRate uploading subjects with a canary subject
	// whose documents mirror theirs, planted on the rhythm of the uploads
	// (see MixCanaries), and MixCanaries adds one canary per CanaryRate
	// listed documents. Default DefaultCanaryRate (40); negative: no
	// canaries at all.
	CanaryRate int

	// AlertOnly opts out of freezing. By default a principal that raises
	// an alert (a canary touched, a burst, views without decisions, a
	// quota) is frozen: every further grant, redemption and decision is
	// refused with ErrFrozen until an audited Unfreeze, and the request
	// that crossed the threshold is refused already (the count decides,
	// so a parallel burst gets no further). With AlertOnly, alerts only
	// alert (audit record, OnAlert, metrics): a paced attacker keeps
	// taking documents up to the hour, day and week quotas until someone
	// acts.
	AlertOnly bool

	// FreezeOnAlert is what the default does now.
	//
	// Deprecated: freezing on alert is the default; remove the field. Set
	// AlertOnly to keep the old default (alerts without a freeze). Setting
	// both is refused by Open.
	FreezeOnAlert bool
}

// AuditConfig is Config.Audit: how long the audit log is write-once, and
// whether Open insists on it. Its zero value is the safe default.
type AuditConfig struct {
	// Retention is how long audit batches stay write-once
	// (default 400 days; negative disables object lock on audit objects).
	Retention time.Duration

	// RequireWriteOnce makes Open fail with ErrInvalidArgument unless
	// the audit log is write-once: a Store that reports retention support
	// (s3store on a bucket with object lock) and a positive Audit.Retention.
	// Off by default, where a store without write-once keeps working and
	// someone who can delete objects can remove audit checkpoints.
	RequireWriteOnce bool
}

// ObservabilityConfig is Config.Observability: logs and metrics. Its zero
// value is the safe default.
type ObservabilityConfig struct {
	// Logger receives operational events: sweeps, alerts, audit write
	// failures, key rotations, holds (nil: silent). It never receives a
	// token, key, plaintext or raw subject.
	Logger *slog.Logger

	// MeterProvider receives the vault's metrics (the Metric* names; nil:
	// a no-op provider). Attributes are fixed labels, never an identity.
	// The vault reports under its instrumentation scope (MeterName and the
	// module version); the service name belongs to the provider's resource,
	// which the application sets.
	MeterProvider metric.MeterProvider
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

	sweeperDone  chan struct{}
	bg           tasks         // background work that outlived its call (bounded.go)
	records      tasks         // the failure records among it (SyncAudit waits for them)
	lateSlots    chan struct{} // failure records on goroutines of their own (maxLate)
	cleanupSlots chan struct{} // background cleanups (maxCleanups)
	instance     [16]byte      // random per Vault: whose sweep claim is whose

	limiter    Limiter
	detector   *detect.Detector
	canaries   canaries
	plantDone  chan struct{} // closed when the canary planter stopped
	restoreMu  sync.Mutex
	restoring  *restoreFlight // a rebuild of lost counts in progress
	liveMarked atomic.Int64   // the live-marker slot this instance wrote last

	mu     sync.RWMutex // guards sys and sealer (token-key rotation)
	sys    *systemKeys
	sealer *token.Sealer
	rl     keyReloader

	ledgerSigner *audit.LedgerSigner
	fold         *folder
	unfolded     unfoldedReleases // releases the folder could not fold (syncaudit.go)
	adopting     sync.WaitGroup
	strays       strayEntries // spend entries seen without a record (adoptLedger)
	streams      streamCounter
	lat          latencyWindow
	lastAppend   atomic.Int64 // duration of the latest refusal record append
	lastNote     atomic.Int64 // duration of the latest refusal's count (noteRefusal)

	tel *telemetry

	clockSt    clockState              // the clock check (clock.go)
	followDone chan struct{}           // followLoop has returned
	chain      *stateChain             // holds and freezes (statechain.go)
	view       *logView                // what the logs say: spent tokens, views (logview.go)
	viewHook   atomic.Pointer[logView] // view, for the appender's OnBatch (set once view exists)
}

// Open opens the vault kept in cfg.Store, creating its keyset on first use.
// It fails with ErrWrongKEK when the keyset was wrapped by another KEK.
func Open(ctx context.Context, cfg Config) (*Vault, error) {
	if cfg.Store == nil || cfg.KEK == nil {
		return nil, fmt.Errorf("vault: open: Store and KEK are required: %w", ErrInvalidArgument)
	}
	if cfg.Retention.Period <= 0 {
		cfg.Retention.Period = DefaultRetention
	}
	if cfg.Retention.Max <= 0 {
		cfg.Retention.Max = cfg.Retention.Period
	}
	if cfg.Retention.Max < cfg.Retention.Period {
		return nil, fmt.Errorf("vault: open: MaxRetention below Retention: %w", ErrInvalidArgument)
	}
	if cfg.Storage.MaxSize <= 0 {
		cfg.Storage.MaxSize = DefaultMaxSize
	}
	if cfg.Access.MaxGrantTTL <= 0 {
		cfg.Access.MaxGrantTTL = DefaultMaxGrantTTL
	}
	if cfg.Access.MaxGrantTTL > MaxGrantTTLLimit {
		return nil, fmt.Errorf("vault: open: MaxGrantTTL above %s: %w", MaxGrantTTLLimit, ErrInvalidArgument)
	}
	if cfg.Access.MaxStreamsPerPrincipal <= 0 {
		cfg.Access.MaxStreamsPerPrincipal = DefaultMaxStreams
	}
	if cfg.Access.ClockLeeway == 0 {
		cfg.Access.ClockLeeway = DefaultLeeway
	}
	if cfg.Access.ClockLeeway < 0 || cfg.Access.ClockLeeway > MaxLeeway {
		return nil, fmt.Errorf("vault: open: ClockLeeway must be within 0..5s: %w", ErrInvalidArgument)
	}
	if cfg.Audit.Retention == 0 {
		cfg.Audit.Retention = DefaultAuditRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retention.SweepPrincipal == "" {
		cfg.Retention.SweepPrincipal = DefaultSweepPrincipal
	}
	if cfg.Detection.AlertOnly && cfg.Detection.FreezeOnAlert {
		return nil, fmt.Errorf("vault: open: AlertOnly and FreezeOnAlert contradict each other (freezing is the default): %w", ErrInvalidArgument)
	}
	// The stores' errors say what happened in the vault's terms
	// (ErrStoreUnavailable, ErrStoreFull): see storeerrors.go.
	v := &Vault{cfg: cfg, st: checkStore(cfg.Store), keys: checkStore(cfg.Storage.KeyStore), kek: newKEKRing(cfg.KEK, cfg.Storage.DecryptKEKs), now: cfg.Now, closed: make(chan struct{}), lateSlots: make(chan struct{}, maxLate), cleanupSlots: make(chan struct{}, maxCleanups), tel: newTelemetry(cfg)}
	if v.keys == nil {
		v.keys = v.st
	}
	if _, err := rand.Read(v.instance[:]); err != nil {
		return nil, err
	}
	v.limiter = cfg.Detection.Limiter
	if v.limiter == nil {
		v.limiter = NewStoreLimiter(v.st)
	}
	v.detector = detect.New(v.limiter, detect.Options{Rules: cfg.Detection.Quota.rules()})
	if err := checkUnversioned(ctx, v.keys, cfg.Storage.AllowVersionedKeyStore); err != nil {
		return nil, err
	}
	if err := checkWriteOnceAudit(ctx, v.st, cfg); err != nil {
		return nil, err
	}
	sys, err := loadOrCreateSystemKeys(ctx, v.st, v.kek)
	if err != nil {
		return nil, err
	}
	if err := v.installKeys(sys); err != nil {
		return nil, err
	}
	if err := v.checkLimiterShared(ctx); err != nil {
		return nil, err
	}
	v.rl.noteLoaded(v.now(), nil)
	if v.ledgerSigner, err = audit.NewLedgerSigner(sys.auditSigner); err != nil {
		return nil, fmt.Errorf("vault: open: %w", err)
	}
	retain := cfg.Audit.Retention
	if retain < 0 {
		retain = 0
	}
	// The view takes this instance's own batches as they are written
	// rather than reading them back (logview.go, ownBatch).
	onBatch := func(log string, first, n int64, recs []audit.Record) {
		if lv := v.viewHook.Load(); lv != nil {
			lv.ownBatch(log, first, n, recs)
		}
	}
	v.log, err = audit.NewAppender(ctx, v.st, sys.auditSigner, audit.AppenderOptions{RetainFor: retain, Now: cfg.Now, OnBatch: onBatch})
	if err != nil {
		return nil, fmt.Errorf("vault: open audit log: %w: %w", ErrAuditUnavailable, err)
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventOpen, Outcome: audit.OutcomeOK}); err != nil {
		// Stop its lease renewal, in the background: the store may be
		// what failed.
		log := v.log
		go func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateTimeout)
			defer cancel()
			log.Close(cctx)
		}()
		return nil, err
	}
	// The state chain (holds, freezes) and what the logs say (spent
	// tokens, views, witness records): read before anything is served.
	if v.chain, err = newStateChain(v, sys); err == nil {
		err = v.chain.load(ctx)
	}
	if err == nil {
		if v.view, err = newLogView(v, sys); err == nil {
			v.viewHook.Store(v.view)
			err = v.view.start(ctx)
		}
	}
	if err != nil {
		log := v.log
		go func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateTimeout)
			defer cancel()
			log.Close(cctx)
		}()
		return nil, fmt.Errorf("vault: open: %w", err)
	}
	v.followDone = make(chan struct{})
	go v.followLoop()
	v.startFolder()
	// Entries a crashed instance left un-folded are adopted in the
	// background (see adoptLedger); Close waits for it.
	// An entry is adopted only once this instance has seen it stray for
	// adoptAfter: a first pass now, a second one adoptAfter later (by
	// followLoop).
	v.adopting.Go(func() {
		actx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() {
			select {
			case <-v.closed:
				cancel()
			case <-actx.Done():
			}
		}()
		v.adoptLedger(actx)
	})
	if cfg.Retention.SweepEvery > 0 {
		v.sweeperDone = make(chan struct{})
		go v.sweepLoop(cfg.Retention.SweepEvery)
	}
	if v.canaryRate() >= 0 {
		v.canaries.wake = make(chan struct{}, 1)
		v.plantDone = make(chan struct{})
		go v.plantLoop()
	}
	return v, nil
}

// followLoop keeps this instance's view of the state chain and of the
// logs current, and writes its periodic witness records, until Close.
func (v *Vault) followLoop() {
	defer close(v.followDone)
	t := time.NewTicker(viewPollEvery)
	defer t.Stop()
	lastWitness := time.Now()
	adoptAt := time.Now().Add(adoptAfter + time.Second) // Open's second adoption pass
	base, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-v.closed
		stop()
	}()
	for {
		select {
		case <-v.closed:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(base, 10*viewPollEvery)
		_ = v.chain.follow(ctx)
		_ = v.view.poll(ctx)
		if !adoptAt.IsZero() && time.Now().After(adoptAt) {
			adoptAt = time.Time{}
			actx, acancel := context.WithTimeout(base, time.Minute)
			_ = v.adoptLedger(actx)
			acancel()
		}
		if time.Since(lastWitness) >= witnessEvery {
			lastWitness = time.Now()
			v.view.witnessState(ctx)
			v.view.witnessLogs(ctx)
		}
		cancel()
	}
}

// versioner is implemented by stores that can tell whether they keep old
// versions of deleted objects (s3store).
type versioner interface {
	Versioned(ctx context.Context) (bool, error)
}

func checkUnversioned(ctx context.Context, st store.Store, allow bool) error {
	vs, ok := storeOf(st).(versioner)
	if !ok || allow {
		return nil
	}
	on, err := vs.Versioned(ctx)
	if err != nil {
		return fmt.Errorf("vault: open: checking key store versioning: %w", err)
	}
	if on {
		return fmt.Errorf("vault: open: the key store keeps object versions, so deleting a key record would not shred it; "+
			"put key records in an unversioned bucket (Config.Storage.KeyStore): %w", ErrInvalidArgument)
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
			// Close ends a sweep in progress.
			ctx, cancel := context.WithTimeout(context.Background(), every*4)
			go func() {
				select {
				case <-v.closed:
					cancel()
				case <-ctx.Done():
				}
			}()
			_, err := v.Admin().Sweep(ctx, Actor{Principal: v.cfg.Retention.SweepPrincipal, Reason: "Config.Retention.SweepEvery"})
			cancel()
			if err != nil && !errors.Is(err, ErrClosed) && !v.isClosed() && v.cfg.Retention.OnSweepError != nil {
				v.cfg.Retention.OnSweepError(err)
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

// Close stops the background sweeps (Config.Retention.SweepEvery) and ledger
// adoption, folds the releases still queued into the audit log, waits for
// the background work of failed calls (cleanups, failure records; each
// bounded on its own, see DeadlineMargin), then writes the audit log's
// final signed checkpoint. Every wait ends with ctx: Close returns by its
// deadline plus DeadlineMargin, with an error wrapping ErrAuditUnavailable
// when the final checkpoint could not be written (releases left unfolded
// are adopted by the next Open or Sweep). The Vault refuses every call
// after Close.
func (v *Vault) Close(ctx context.Context) error {
	var err error
	v.once.Do(func() {
		close(v.closed) // ends a background sweep and the adoption
		if v.sweeperDone != nil {
			waitFor(ctx, v.sweeperDone)
		}
		if v.plantDone != nil {
			waitFor(ctx, v.plantDone) // a canary being planted is cancelled; the rest are dropped
		}
		v.unmarkLive(ctx)
		adopted := make(chan struct{})
		go func() { v.adopting.Wait(); close(adopted) }()
		waitFor(ctx, adopted)
		v.fold.close(ctx)
		waitFor(ctx, v.followDone)
		// Vouch, in this log's last records, for the state chain and the
		// other logs as this instance leaves them.
		v.view.witnessState(ctx)
		v.view.witnessLogs(ctx)
		v.records.Wait(ctx)
		v.bg.Wait(ctx)
		if cerr := v.log.Close(ctx); cerr != nil {
			err = fmt.Errorf("vault: close: %w: %w", ErrAuditUnavailable, cerr)
		}
	})
	return err
}

// waitFor waits until c is closed or ctx ends.
func waitFor(ctx context.Context, c <-chan struct{}) {
	select {
	case <-c:
	case <-ctx.Done():
	}
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

// objectLocker is implemented by stores that can say whether RetainUntil
// makes objects write-once (s3store: the bucket has object lock).
type objectLocker interface {
	ObjectLock() bool
}

// checkWriteOnceAudit enforces Config.Audit.RequireWriteOnce.
func checkWriteOnceAudit(_ context.Context, st store.Store, cfg Config) error {
	if !cfg.Audit.RequireWriteOnce {
		return nil
	}
	if cfg.Audit.Retention < 0 {
		return fmt.Errorf("vault: open: RequireWriteOnceAudit is set but AuditRetention is negative: %w", ErrInvalidArgument)
	}
	if ol, ok := storeOf(st).(objectLocker); !ok || !ol.ObjectLock() {
		return fmt.Errorf("vault: open: RequireWriteOnceAudit is set but the store cannot keep audit batches write-once "+
			"(use a bucket with object lock): %w", ErrInvalidArgument)
	}
	return nil
}
