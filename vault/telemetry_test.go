package vault

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/audit"
)

// recMeter is a MeterProvider that records counter sums and histogram
// counts by instrument name and attribute set (the API is the interface;
// the agegate test runs the real SDK and Prometheus exporter).
type recMeter struct {
	noop.MeterProvider
	mu     sync.Mutex
	sums   map[string]float64 // "name{k=v,...}" -> sum (histograms: count)
	scopes []string           // "name@version" of every Meter asked for
}

func newRecMeter() *recMeter { return &recMeter{sums: map[string]float64{}} }

func (m *recMeter) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	m.mu.Lock()
	m.scopes = append(m.scopes, name+"@"+metric.NewMeterConfig(opts...).InstrumentationVersion())
	m.mu.Unlock()
	return recMeterM{r: m}
}

func (m *recMeter) add(name string, v float64, set attribute.Set) {
	var kv []string
	for it := set.Iter(); it.Next(); {
		a := it.Attribute()
		kv = append(kv, string(a.Key)+"="+a.Value.String())
	}
	m.mu.Lock()
	m.sums[name+"{"+strings.Join(kv, ",")+"}"] += v
	m.mu.Unlock()
}

func (m *recMeter) get(key string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sums[key]
}

func (m *recMeter) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.sums {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

type recMeterM struct {
	noop.Meter
	r *recMeter
}

func (m recMeterM) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return recCounter{name: name, r: m.r}, nil
}

func (m recMeterM) Float64Histogram(name string, _ ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return recHist{name: name, r: m.r}, nil
}

type recCounter struct {
	embedded.Int64Counter
	name string
	r    *recMeter
}

func (c recCounter) Add(_ context.Context, n int64, opts ...metric.AddOption) {
	c.r.add(c.name, float64(n), metric.NewAddConfig(opts).Attributes())
}

func (c recCounter) Enabled(context.Context) bool { return true }

type recHist struct {
	embedded.Float64Histogram
	name string
	r    *recMeter
}

func (h recHist) Record(_ context.Context, _ float64, opts ...metric.RecordOption) {
	h.r.add(h.name, 1, metric.NewRecordConfig(opts).Attributes())
}

func (h recHist) Enabled(context.Context) bool { return true }

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = testenv.Buffer

// TestTelemetryCounts drives every counted event once or more and checks
// each counter against what was done, and that the log and the metric
// labels carry no token, subject or image byte.
func TestTelemetryCounts(t *testing.T) {
	rec := newRecMeter()
	var logs syncBuffer
	st := fsBackend(t)
	var alerts []Alert
	v := openTestVault(t, st, testKEK(t), func(c *Config) {
		c.Observability.MeterProvider = rec
		c.Observability.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Detection.Quota = Quota{Documents: 2, Burst: 100}
		c.Detection.AlertOnly = true // counts two quota alerts of one principal
		c.Detection.OnAlert = func(a Alert) { alerts = append(alerts, a) }
	})
	ctx := context.Background()
	const subject = "member-raw-id-7731@example.org"
	const marker = "PLAINTEXT-MARKER-93"
	img := image(40<<10, marker)
	var ids []string
	for range 3 {
		ids = append(ids, putImage(t, v, img, subject).ID)
	}
	g := grant(t, v, ids[0], "rev-1")
	if _, err := redeemAll(v, g.Token, "rev-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := redeemAll(v, g.Token, "rev-1"); !errors.Is(err, ErrTokenReplayed) {
		t.Fatalf("replay: %v", err)
	}
	g2 := grant(t, v, ids[1], "rev-1")
	if _, err := redeemAll(v, g2.Token, "rev-2"); !errors.Is(err, ErrWrongPrincipal) {
		t.Fatalf("wrong principal: %v", err)
	}
	if _, err := v.Grant(ctx, ids[2], Access{Principal: "rev-1", Purpose: "age-check"}); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third document over a quota of 2: %v", err)
	}
	if err := v.Admin().Delete(ctx, ids[1], testActor); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().SyncAudit(ctx); err != nil { // release records are folded off the client's path
		t.Fatal(err)
	}
	v.clock.Advance(DefaultRetention + 2*3600e9)
	rep, err := v.Admin().Sweep(ctx, testActor)
	if err != nil {
		t.Fatal(err)
	}

	for key, want := range map[string]float64{
		"idvault.puts{}":        3,
		"idvault.grants{}":      2,
		"idvault.redemptions{}": 1, // served once; the replay is a refusal only
		"idvault.refusals{event=redeem,reason=token-replayed}":  1,
		"idvault.refusals{event=redeem,reason=wrong-principal}": 1,
		"idvault.refusals{event=grant,reason=quota-exceeded}":   1,
		"idvault.deletions{event=delete}":                       1,
		"idvault.deletions{event=expire}":                       float64(rep.Expired),
		"idvault.sweeps{}":                                      1,
		"idvault.alerts{kind=quota-exceeded}":                   float64(len(alerts)),
		"idvault.audit.append.duration{outcome=error}":          0,
	} {
		if got := rec.get(key); got != want {
			t.Errorf("%s = %v, want %v (recorded: %q)", key, got, want, rec.keys())
		}
	}
	if rep.Expired != 2 || len(alerts) != 1 {
		t.Fatalf("setup: %d expired, %d alerts", rep.Expired, len(alerts))
	}
	if rec.get("idvault.audit.append.duration{outcome=ok}") < 10 {
		t.Errorf("audit append latency not recorded: %q", rec.keys())
	}
	out := logs.String()
	for _, want := range []string{"level=WARN msg=alert kind=quota-exceeded", "msg=\"sweep done\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, secret := range []string{subject, marker, g.Token, g2.Token, g.Token[:20]} {
		if strings.Contains(out, secret) || strings.Contains(strings.Join(rec.keys(), " "), secret) {
			t.Errorf("a secret (%d bytes) reached the log or a metric label", len(secret))
		}
	}
}

// TestTelemetryAuditFailure: a failed audit append is counted and logged
// at error level, and nothing it was for is counted as done.
func TestTelemetryAuditFailure(t *testing.T) {
	rec := newRecMeter()
	var logs syncBuffer
	fs := &flakyStore{Store: fsBackend(t), prefix: "audit/"}
	v := openTestVault(t, fs, testKEK(t), func(c *Config) {
		c.Observability.MeterProvider = rec
		c.Observability.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	info := putImage(t, v, image(10<<10, ""), "m")
	fs.down.Store(true)
	// A grant's record must be durable before the token is handed out (a
	// redemption's is its spend entry, outside audit/, so it needs no
	// append here).
	if _, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "age-check"}); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("grant with audit down: %v", err)
	}
	if got := rec.get("idvault.audit.failures{event=grant}"); got < 1 {
		t.Errorf("audit failures = %v, want >= 1 (%q)", got, rec.keys())
	}
	if got := rec.get("idvault.grants{}"); got != 0 {
		t.Errorf("a grant whose record failed was counted: %v", got)
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"audit append failed") {
		t.Errorf("no error line for the failed append:\n%s", logs.String())
	}
}

// TestReleasedBytes: the counter adds exactly what was read, once, when
// the reader is closed, whether read by Read or by WriteTo.
func TestReleasedBytes(t *testing.T) {
	rec := newRecMeter()
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) { c.Observability.MeterProvider = rec })
	body := strings.Repeat("x", 10000)
	rc := v.countReleased(io.NopCloser(strings.NewReader(body)))
	buf := make([]byte, 3000)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if got := rec.get("idvault.released{}"); got != 0 {
		t.Fatalf("counted before Close: %v", got)
	}
	rc.Close()
	rc.Close()
	if got := rec.get("idvault.released{}"); got != 3000 {
		t.Fatalf("released = %v, want 3000 (a partial read counts what left)", got)
	}
	rc = v.countReleased(io.NopCloser(strings.NewReader(body)))
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if got := rec.get("idvault.released{}"); got != 13000 {
		t.Fatalf("released = %v, want 13000", got)
	}
}

// TestTelemetrySilentByDefault: no Logger and no MeterProvider is a
// working vault (no-op metrics, discarded logs).
func TestTelemetrySilentByDefault(t *testing.T) {
	v, _ := newMemVault(t)
	info := putImage(t, v, image(1<<10, ""), "m")
	g := grant(t, v, info.ID, "r")
	rc, _, err := v.Redeem(context.Background(), g.Token, Requester{Principal: "r"})
	if err != nil {
		t.Fatal(err)
	}
	rc = v.countReleased(rc)
	if n, _ := io.Copy(io.Discard, rc); n != 1<<10 {
		t.Fatalf("read %d bytes", n)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTelemetryScope: the vault reports under its own instrumentation
// scope with the library's version (the service name is the application's,
// on the provider's resource).
func TestTelemetryScope(t *testing.T) {
	rec := newRecMeter()
	openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) { c.Observability.MeterProvider = rec })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.scopes) != 1 || rec.scopes[0] != MeterName+"@"+libraryVersion() || libraryVersion() == "" {
		t.Fatalf("meters asked for: %q, want one %s@<version>", rec.scopes, MeterName)
	}
}

// TestTelemetryCanariesLikePuts: planted canaries move the put counter
// exactly as the "put ok" records they write, and no metric names them: a
// reader of the metrics and the audit log (or the bucket) cannot tell a
// canary from a document by comparing the two.
func TestTelemetryCanariesLikePuts(t *testing.T) {
	rec := newRecMeter()
	st := fsBackend(t)
	v := openTestVault(t, st, testKEK(t), func(c *Config) { c.Observability.MeterProvider = rec })
	ctx := context.Background()
	putImage(t, v, image(8<<10, ""), "member-1")
	if _, err := v.Admin().PlantCanaries(ctx, 3); err != nil {
		t.Fatal(err)
	}
	putImage(t, v, image(8<<10, ""), "member-2")
	if err := v.Admin().SyncAudit(ctx); err != nil {
		t.Fatal(err)
	}
	putOK := 0
	for _, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventPut, Outcome: audit.OutcomeOK}) {
		if err != nil {
			t.Fatal(err)
		}
		putOK++
	}
	if got := rec.get("idvault.puts{}"); putOK != 5 || got != float64(putOK) {
		t.Fatalf("idvault.puts = %v, \"put ok\" records = %d (want 5 each)", got, putOK)
	}
	for _, k := range rec.keys() {
		if strings.Contains(strings.ToLower(k), "canar") || strings.Contains(strings.ToLower(k), "decoy") {
			t.Errorf("a metric tells canaries apart: %s", k)
		}
	}
}
