package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"
)

// Results is everything one run measured; it is what -out holds as JSON.
type Results struct {
	Meta         Meta          `json:"meta"`
	Measurements []Measurement `json:"measurements"`
	Checks       []Check       `json:"checks"`
	StoreOps     []StoreOp     `json:"store_ops,omitempty"` // -tracestore only
}

// Meta describes the run.
type Meta struct {
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	GoVersion  string    `json:"go_version"`
	GOOS       string    `json:"goos"`
	GOARCH     string    `json:"goarch"`
	NumCPU     int       `json:"num_cpu"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	Quick      bool      `json:"quick"`
	Sections   []string  `json:"sections"`
	Notes      []string  `json:"notes,omitempty"`
}

// Measurement is one contender in one case.
type Measurement struct {
	Section     string  `json:"section"`
	Case        string  `json:"case"`
	Contender   string  `json:"contender"`
	Size        int64   `json:"size_bytes,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	N           int     `json:"n"` // operations recorded
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MBps        float64 `json:"mb_per_s,omitempty"`     // bytes moved / time spent moving them
	P50MBps     float64 `json:"p50_mb_per_s,omitempty"` // size / p50: robust to a few descheduled samples
	OpsPerSec   float64 `json:"ops_per_s,omitempty"`
	// CPUMsPerOp is this process's CPU time (all goroutines, GC included)
	// per operation; contenders run one at a time, so it is theirs. MinIO's
	// CPU, on the same cores, is not in it.
	CPUMsPerOp float64 `json:"cpu_ms_per_op,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"` // memory section: highest VmHWM over the repetitions
	BaseRSSMiB float64 `json:"base_rss_mib,omitempty"` // memory section: VmRSS after setup, before the operation
}

// Check is one line of the ratio table: idvault's figure, the plain
// alternative's (when there is one), their ratio and the target.
type Check struct {
	Name     string  `json:"name"`
	Metric   string  `json:"metric"` // p50_ms, mb_per_s, peak_rss_mib, records_per_s
	Value    float64 `json:"value"`  // idvault
	Baseline float64 `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"` // Value / Baseline
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"` // absent: no target, for information
}

// target is a bound on a ratio (or, with abs, on the value itself).
type target struct {
	le    bool // "<=" when true, ">=" otherwise
	bound float64
	abs   bool // bound the value, not the ratio
	unit  string
}

func atMost(b float64) *target  { return &target{le: true, bound: b} }
func atLeast(b float64) *target { return &target{bound: b} }
func valueAtMost(b float64, u string) *target {
	return &target{le: true, bound: b, abs: true, unit: u}
}
func valueAtLeast(b float64, u string) *target { return &target{bound: b, abs: true, unit: u} }

func (t *target) String() string {
	op := ">="
	if t.le {
		op = "<="
	}
	if t.abs {
		return fmt.Sprintf("%s %s %s", op, trimFloat(t.bound), t.unit)
	}
	return fmt.Sprintf("%s %sx", op, trimFloat(t.bound))
}

func trimFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%g", f)
}

// newCheck compares value with baseline (0: no baseline) under t (nil: no
// target).
func newCheck(name, metric string, value, baseline float64, t *target) Check {
	c := Check{Name: name, Metric: metric, Value: value, Baseline: baseline}
	if baseline > 0 {
		c.Ratio = value / baseline
	}
	if t != nil {
		c.Target = t.String()
		x := c.Ratio
		if t.abs {
			x = value
		}
		met := x >= t.bound
		if t.le {
			met = x <= t.bound
		}
		if (!t.abs && baseline <= 0) || math.IsNaN(x) || value <= 0 {
			met = false
		}
		c.Met = &met
	}
	return c
}

// find returns the measurement of (section, case, contender).
func (r *Results) find(section, cse, who string) (Measurement, bool) {
	for _, m := range r.Measurements {
		if m.Section == section && m.Case == cse && m.Contender == who {
			return m, true
		}
	}
	return Measurement{}, false
}

// compare adds a check of metric between two measured contenders; it does
// nothing when either was not measured (a section left out with -only).
func (r *Results) compare(name, section, cse, who, base, metric string, t *target) {
	a, ok1 := r.find(section, cse, who)
	b, ok2 := r.find(section, cse, base)
	if !ok1 || !ok2 {
		return
	}
	r.Checks = append(r.Checks, newCheck(name, metric, metricOf(a, metric), metricOf(b, metric), t))
}

func metricOf(m Measurement, metric string) float64 {
	switch metric {
	case "p50_ms":
		return m.P50Ms
	case "p99_ms":
		return m.P99Ms
	case "mb_per_s":
		return m.MBps
	case "p50_mb_per_s":
		return m.P50MBps
	case "peak_rss_mib":
		return m.PeakRSSMiB
	case "records_per_s", "ops_per_s":
		return m.OpsPerSec
	}
	return math.NaN()
}

// writeJSON writes r to path, creating its directory.
func (r *Results) writeJSON(path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// print writes the measurements section by section, then the ratio table.
func (r *Results) print(w io.Writer) {
	section := ""
	var tw *tabwriter.Writer
	flush := func() {
		if tw != nil {
			tw.Flush()
		}
	}
	for _, m := range r.Measurements {
		if m.Section != section {
			flush()
			section = m.Section
			fmt.Fprintf(w, "\n== %s\n", section)
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			if section == "memory" {
				fmt.Fprintln(tw, "case\tcontender\tn\tpeak RSS MiB\tbase RSS MiB\tp50 ms\tMB/s\t")
			} else {
				fmt.Fprintln(tw, "case\tcontender\tn\tp50 ms\tp99 ms\tMB/s\tMB/s@p50\tops/s\tCPU ms/op\t")
			}
		}
		if section == "memory" {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t\n", m.Case, m.Contender, m.N, m.PeakRSSMiB, m.BaseRSSMiB, m.P50Ms, m.MBps)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.0f\t%s\t\n", m.Case, m.Contender, m.N, fmtMs(m.P50Ms), fmtMs(m.P99Ms), fmtMB(m.MBps), fmtMB(m.P50MBps), m.OpsPerSec, fmtMs(m.CPUMsPerOp))
	}
	flush()

	fmt.Fprintf(w, "\n== ratios (idvault / plain, same run)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "check\tidvault\tplain\tratio\ttarget\tmet")
	for _, c := range r.Checks {
		base, ratio := "-", "-"
		if c.Baseline > 0 {
			base = fmtMetric(c.Metric, c.Baseline)
			ratio = fmt.Sprintf("%.2fx", c.Ratio)
		}
		met := ""
		if c.Met != nil {
			met = "no"
			if *c.Met {
				met = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, fmtMetric(c.Metric, c.Value), base, ratio, c.Target, met)
	}
	tw.Flush()
	if len(r.StoreOps) > 0 {
		fmt.Fprintf(w, "\n== store calls made by the vault (-tracestore; Get until headers, body read not included)\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tclass\top\tn\tper vault op\tp50 ms\tp99 ms\t")
		for _, s := range r.StoreOps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%s\t%s\t\n", s.Phase, s.Class, s.Op, s.N, s.PerVaultOp, fmtMs(s.P50Ms), fmtMs(s.P99Ms))
		}
		tw.Flush()
	}
	for _, n := range r.Meta.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 0.1:
		return fmt.Sprintf("%.4f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtMB(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtMetric(metric string, v float64) string {
	switch metric {
	case "p50_ms", "p99_ms":
		return fmtMs(v) + " ms"
	case "mb_per_s", "p50_mb_per_s":
		return fmt.Sprintf("%.0f MB/s", v)
	case "peak_rss_mib":
		return fmt.Sprintf("%.1f MiB", v)
	case "records_per_s", "ops_per_s":
		return fmt.Sprintf("%.0f/s", v)
	}
	return fmt.Sprintf("%g", v)
}
