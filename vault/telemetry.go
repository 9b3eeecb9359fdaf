package vault

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/idvault/idvault/vault/audit"
)

// The metrics a Vault reports through Config.Observability.MeterProvider (OpenTelemetry
// names; a Prometheus exporter shows them as idvault_puts_total and so on).
// Every one is derived from the audit records the vault writes, so a metric
// and the audit log never disagree; attributes are fixed labels (event,
// reason, alert kind, outcome), never a principal, subject, object or token.
//
// The vault reports under the instrumentation scope MeterName, with the
// library's module version. It does not name the service: an
// OpenTelemetry resource (service.name, service.version, ...) describes the
// whole process and is set by the application on the MeterProvider it
// passes (sdkmetric.WithResource, or OTEL_SERVICE_NAME); a provider without
// one reports "unknown_service". The sample app (examples/agegate) sets it.
const (
	// MetricPuts counts documents stored: every "put ok" record, canaries
	// included. A canary is stored like a document on purpose, and a
	// count that left canaries out (or counted them apart) would tell
	// anyone who reads the metrics and the audit log or the bucket which
	// objects are canaries: those created while the count did not move.
	MetricPuts = "idvault.puts"
	// MetricGrants counts tokens issued.
	MetricGrants = "idvault.grants"
	// MetricRedemptions counts images served: redeem records with outcome
	// "ok", which exist exactly when plaintext was released. A replay, a
	// missing or tampered document is a refusal only (MetricRefusals).
	MetricRedemptions = "idvault.redemptions"
	// MetricRefusals counts refusals, by attributes "event" (put, grant,
	// redeem, delete, ...) and "reason" (token-expired, quota-exceeded, ...).
	MetricRefusals = "idvault.refusals"
	// MetricReleasedBytes counts plaintext bytes handed to redeemers,
	// added when the reader is closed.
	MetricReleasedBytes = "idvault.released"
	// MetricDeletions counts documents removed, by attribute "event":
	// delete (on request), expire (Sweep), erase (EraseSubject).
	MetricDeletions = "idvault.deletions"
	// MetricSweeps counts completed sweeps.
	MetricSweeps = "idvault.sweeps"
	// MetricAlerts counts alerts, by attribute "kind" (an AlertKind).
	MetricAlerts = "idvault.alerts"
	// MetricAuditAppend is the latency of durable audit appends in
	// seconds, by attribute "outcome" (ok or error).
	MetricAuditAppend = "idvault.audit.append.duration"
	// MetricAuditFailures counts audit appends that failed (nothing was
	// served or changed after them), by attribute "event".
	MetricAuditFailures = "idvault.audit.failures"
)

// MeterName is the instrumentation scope of the vault's metrics.
const MeterName = "github.com/idvault/idvault/vault"

// libraryVersion is the idvault module version this program was built
// with, as the Go toolchain recorded it ("devel" when built from a
// checkout or a workspace).
var libraryVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := ""
	if bi.Main.Path == "github.com/idvault/idvault" {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/idvault/idvault" && d.Replace == nil {
			v = d.Version
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
})

// telemetry turns audit records into log lines and metrics.
type telemetry struct {
	log *slog.Logger // never nil: a discarding logger when Config.Observability.Logger is nil

	puts, grants, redemptions, refusals metric.Int64Counter
	released, deletions, sweeps, alerts metric.Int64Counter
	auditFailures                       metric.Int64Counter
	auditAppend                         metric.Float64Histogram
	attrOK, attrErr                     metric.MeasurementOption
	eventAttrs                          sync.Map // audit.Event -> metric.MeasurementOption
}

func newTelemetry(cfg Config) *telemetry {
	t := &telemetry{log: cfg.Observability.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	mp := cfg.Observability.MeterProvider
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(MeterName, metric.WithInstrumentationVersion(libraryVersion()))
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil { // an SDK reports a bad name here; ours are fixed
			t.log.Warn("metric instrument unavailable", "name", name, "err", err)
		}
		if c == nil {
			c = noop.Int64Counter{}
		}
		return c
	}
	t.puts = counter(MetricPuts, "{document}", "Documents stored.")
	t.grants = counter(MetricGrants, "{token}", "Single-use tokens issued.")
	t.redemptions = counter(MetricRedemptions, "{redemption}", "Redemptions recorded as ok in the audit log.")
	t.refusals = counter(MetricRefusals, "{refusal}", "Refusals, by event and reason.")
	t.released = counter(MetricReleasedBytes, "By", "Plaintext bytes handed to redeemers.")
	t.deletions = counter(MetricDeletions, "{document}", "Documents removed, by event.")
	t.sweeps = counter(MetricSweeps, "{sweep}", "Completed sweeps.")
	t.alerts = counter(MetricAlerts, "{alert}", "Alerts, by kind.")
	t.auditFailures = counter(MetricAuditFailures, "{record}", "Audit appends that failed.")
	h, err := m.Float64Histogram(MetricAuditAppend, metric.WithUnit("s"),
		metric.WithDescription("Latency of durable audit appends."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	if err != nil {
		t.log.Warn("metric instrument unavailable", "name", MetricAuditAppend, "err", err)
	}
	if h == nil {
		h = noop.Float64Histogram{}
	}
	t.auditAppend = h
	t.attrOK = metric.WithAttributes(attribute.String("outcome", "ok"))
	t.attrErr = metric.WithAttributes(attribute.String("outcome", "error"))
	return t
}

func (t *telemetry) event(ev audit.Event) metric.MeasurementOption {
	if o, ok := t.eventAttrs.Load(ev); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := t.eventAttrs.LoadOrStore(ev, metric.WithAttributes(attribute.String("event", string(ev))))
	return o.(metric.MeasurementOption)
}

// appendObserved appends r to the audit log and reports it (auditRecord's
// one call into telemetry).
func (v *Vault) appendObserved(ctx context.Context, r audit.Record) (audit.Record, error) {
	start := time.Now() // real time, not Config.Now: this is a latency
	w, err := v.log.Append(ctx, r)
	v.observeAudit(r, time.Since(start), err)
	return w, err
}

// observeAudit derives every log line and metric from one audit append: r is
// the record, d how long the append took, err its failure.
func (v *Vault) observeAudit(r audit.Record, d time.Duration, err error) {
	t := v.tel
	if t == nil {
		return
	}
	ctx := context.Background()
	if err != nil {
		t.auditAppend.Record(ctx, d.Seconds(), t.attrErr)
		t.auditFailures.Add(ctx, 1, t.event(r.Event))
		t.log.Error("audit append failed: nothing is served or changed until it succeeds",
			"event", string(r.Event), "outcome", string(r.Outcome), "err", err)
		return
	}
	t.auditAppend.Record(ctx, d.Seconds(), t.attrOK)
	if r.Outcome == audit.OutcomeRefused {
		t.refusals.Add(ctx, 1, metric.WithAttributes(
			attribute.String("event", string(r.Event)), attribute.String("reason", r.Reason)))
		return
	}
	if r.Outcome != audit.OutcomeOK {
		if r.Event == audit.EventSweep || r.Event == audit.EventAlert {
			t.log.Error("vault operation failed", "event", string(r.Event), "reason", r.Reason)
		}
		return
	}
	switch r.Event {
	case audit.EventPut:
		t.puts.Add(ctx, 1)
	case audit.EventGrant:
		t.grants.Add(ctx, 1)
	case audit.EventRedeem:
		t.redemptions.Add(ctx, 1)
	case audit.EventDelete, audit.EventExpire, audit.EventErase:
		if r.Object != "" { // one record per document; EraseSubject adds a summary without one
			t.deletions.Add(ctx, 1, t.event(r.Event))
		} else {
			t.log.Info("subject erased", "by", r.Principal, "detail", r.Detail)
		}
	case audit.EventSweep:
		t.sweeps.Add(ctx, 1)
		t.log.Info("sweep done", "by", r.Principal, "detail", r.Detail)
	case audit.EventAlert:
		if r.Reason == "unfrozen" {
			t.log.Info("principal unfrozen", "by", r.Principal, "detail", r.Detail)
			return
		}
		t.alerts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", r.Reason)))
		t.log.Warn("alert", "kind", r.Reason, "principal", r.Principal, "remote", r.RemoteAddr, "detail", r.Detail)
	case audit.EventRotate:
		t.log.Info("key rotated", "by", r.Principal, "detail", r.Detail)
	case audit.EventHold, audit.EventRelease:
		t.log.Info("legal hold changed", "event", string(r.Event), "by", r.Principal, "object", r.Object)
	case audit.EventOpen:
		t.log.Debug("vault opened", "vault", v.ID())
	}
}

// countReleased wraps a redeemed document's plaintext reader so that the
// bytes read are added to MetricReleasedBytes when it is closed.
func (v *Vault) countReleased(rc io.ReadCloser) io.ReadCloser {
	if v.tel == nil {
		return rc
	}
	return &releaseCounter{ReadCloser: rc, t: v.tel}
}

type releaseCounter struct {
	io.ReadCloser
	t    *telemetry
	n    int64
	once sync.Once
}

func (c *releaseCounter) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// WriteTo keeps io.Copy from allocating its own buffer when the wrapped
// reader had a WriterTo.
func (c *releaseCounter) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.ReadCloser.(io.WriterTo); ok {
		n, err := wt.WriteTo(w)
		c.n += n
		return n, err
	}
	n, err := io.Copy(w, struct{ io.Reader }{c.ReadCloser})
	c.n += n
	return n, err
}

func (c *releaseCounter) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { c.t.released.Add(context.Background(), c.n) })
	return err
}
