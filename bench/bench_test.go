package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
)

func TestMain(m *testing.M) {
	// The memory section re-executes this binary as its child.
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain(os.Stdin, os.Stdout))
	}
	os.Exit(miniotest.Main(m))
}

// TestQuickRun runs the whole harness in -quick mode against real MinIO and
// checks that the JSON has every row and every check, with sane numbers.
// It does not check the targets: CI must not fail on a noisy machine.
func TestQuickRun(t *testing.T) {
	srv := miniotest.Server(t)
	out := filepath.Join(t.TempDir(), "results.json")
	var stdout, stderr bytes.Buffer
	started := false
	start := func() (server, func(), error) {
		started = true
		return serverOf(srv), func() {}, nil
	}
	args := []string{"-quick", "-tracestore", "-out", out}
	if raceEnabled {
		// The race detector slows the children's crypto several times
		// over; a smaller object keeps the test fast and still exercises
		// the re-exec path. `go run ./bench` always uses 100 MiB.
		args = append(args, "-memsize", fmt.Sprint(16<<20))
	}
	if code := cli(args, &stdout, &stderr, start); code != 0 {
		t.Fatalf("cli exit %d\nstderr:\n%s", code, stderr.String())
	}
	if !started {
		t.Fatal("cli did not start the server")
	}
	if !strings.Contains(stdout.String(), "== ratios") {
		t.Errorf("stdout has no ratio table:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), srv.SecretKey()) {
		t.Error("output contains the MinIO secret key")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if !res.Meta.Quick || !slices.Equal(res.Meta.Sections, sections) || res.Meta.Seconds <= 0 {
		t.Errorf("meta = %+v", res.Meta)
	}
	checkRows(t, &res)
	checkChecks(t, &res)
	checkTrace(t, &res)
}

// checkTrace: -tracestore saw the store calls that define a Put and a
// Redeem, with sane figures.
func checkTrace(t *testing.T, res *Results) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range res.StoreOps {
		seen[s.Phase+" "+s.Class+" "+s.Op] = true
		if s.N <= 0 || !finitePos(s.PerVaultOp) || !finitePos(s.P50Ms) || s.P99Ms < s.P50Ms {
			t.Errorf("store op %+v: insane figures", s)
		}
	}
	for _, k := range []string{
		"put 256KiB blobs Put IfAbsent", "put 256KiB keys Put IfAbsent", "put 20MiB audit Put IfAbsent",
		"redeem 4KiB c=1 redeemed Put IfAbsent", "redeem 5MiB c=8 blobs Get", "redeem 1MiB c=1 keys Get",
	} {
		if !seen[k] {
			t.Errorf("store trace lacks %q", k)
		}
	}
	if !haveRedis() {
		return
	}
	for _, k := range []string{"redislimiter redeem 1MiB c=1 redeemed Put IfAbsent", "redislimiter redeem 1MiB c=8 keys Get"} {
		if !seen[k] {
			t.Errorf("store trace lacks %q", k)
		}
	}
}

// wantRows lists (section, case, contender) of a full run.
func wantRows(memSize int64) [][3]string {
	var rows [][3]string
	add := func(section, cse string, who ...string) {
		for _, w := range who {
			rows = append(rows, [3]string{section, cse, w})
		}
	}
	for _, s := range []string{"256KiB", "1MiB", "5MiB", "20MiB"} {
		add("put", s, "idvault Put", "PutObject", "PutObject If-None-Match", "age+PutObject")
	}
	for _, s := range []string{"4KiB", "1MiB", "5MiB"} {
		for _, c := range []string{"c=1", "c=8"} {
			add("redeem", s+" "+c, nGrantRedeem, nRedeemAlone, nGetObject, nPresigned, nCondPut, nCondPutGet, nTwoCondPutsGet)
			if haveRedis() {
				add("redeem", s+" "+c, nGrantRedeemRedis, nRedeemAloneRedis)
			}
		}
	}
	for _, s := range []string{"4KiB", "256KiB", "1MiB", "5MiB"} {
		add("crypto", "encrypt "+s, "idvault encrypt", "AES-GCM Seal")
		add("crypto", "decrypt "+s, "idvault decrypt", "AES-GCM Open")
	}
	add("memory", sizeName(memSize), modeVaultPut, modeVaultRedeem, modePutObject, modeGetObject)
	for _, s := range []string{"fsstore", "s3store"} {
		for _, w := range []string{"1", "8", "64"} {
			add("audit", s+" "+w+" writers", "idvault Append")
		}
	}
	for _, w := range []string{"1", "8", "64"} {
		add("audit", "fsstore "+w+" writers", "write+fsync per record")
	}
	return rows
}

func finitePos(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

func checkRows(t *testing.T, res *Results) {
	t.Helper()
	var memSize int64
	for _, m := range res.Measurements {
		if m.Section == "memory" {
			memSize = m.Size
		}
	}
	want := wantRows(memSize)
	got := map[[3]string]bool{}
	for _, m := range res.Measurements {
		k := [3]string{m.Section, m.Case, m.Contender}
		if got[k] {
			t.Errorf("row %v twice", k)
		}
		got[k] = true
		if !slices.Contains(want, k) {
			t.Errorf("unexpected row %v", k)
		}
		if m.N <= 0 || !finitePos(m.P50Ms) || !finitePos(m.P99Ms) || m.P99Ms < m.P50Ms || !finitePos(m.OpsPerSec) {
			t.Errorf("row %v: insane figures %+v", k, m)
		}
		if m.Size > 0 && !finitePos(m.MBps) {
			t.Errorf("row %v: no throughput: %+v", k, m)
		}
		if m.Section == "memory" {
			// A Go process with a MinIO client is over 4 MiB resident; one
			// that holds the whole object would be over memSize.
			if m.PeakRSSMiB < 4 || m.PeakRSSMiB > 4096 || m.BaseRSSMiB <= 0 || m.BaseRSSMiB > m.PeakRSSMiB {
				t.Errorf("row %v: insane RSS %+v", k, m)
			}
		}
	}
	for _, k := range want {
		if !got[k] {
			t.Errorf("missing row %v", k)
		}
	}
}

func checkChecks(t *testing.T, res *Results) {
	t.Helper()
	targets := map[string]string{}
	for _, c := range res.Checks {
		if _, dup := targets[c.Name]; dup {
			t.Errorf("check %q twice", c.Name)
		}
		targets[c.Name] = c.Target
		if !finitePos(c.Value) {
			t.Errorf("check %q: value %v", c.Name, c.Value)
		}
		if c.Baseline != 0 && (!finitePos(c.Baseline) || math.Abs(c.Ratio-c.Value/c.Baseline) > 1e-9*c.Ratio) {
			t.Errorf("check %q: baseline %v ratio %v", c.Name, c.Baseline, c.Ratio)
		}
		if (c.Target == "") != (c.Met == nil) {
			t.Errorf("check %q: target %q but met %v", c.Name, c.Target, c.Met)
		}
	}
	// Every comparison is there, and the brief's targets sit on exactly
	// the cases they apply to.
	want := map[string]string{}
	for _, sz := range []string{"256KiB", "1MiB", "5MiB", "20MiB"} {
		want["put "+sz+" p50: idvault / PutObject"] = map[string]string{"256KiB": "<= 1.5x", "5MiB": "<= 1.15x"}[sz]
		want["put "+sz+" p50: idvault / age+PutObject"] = ""
		want["put "+sz+" p50: PutObject If-None-Match / PutObject"] = ""
	}
	for _, sz := range []string{"4KiB", "1MiB", "5MiB"} {
		grantT := map[string]string{"1MiB": "<= 1.5x"}[sz]
		redisT := map[string]string{"1MiB": "<= 1.3x"}[sz]
		for _, c := range []string{"c=1", "c=8"} {
			p := "redeem " + sz + " " + c + " p50: "
			want[p+"Redeem alone / cond PUT+GetObject"] = "<= 1.15x"
			want[p+"Grant+Redeem / 2 cond PUTs+GetObject"] = grantT
			if haveRedis() {
				want[p+"Redeem alone (redislimiter) / cond PUT+GetObject"] = "<= 1.15x"
				want[p+"Grant+Redeem (redislimiter) / cond PUT+GetObject"] = redisT
			}
			want[p+"Grant+Redeem / GetObject"] = ""
			want[p+"Redeem alone / GetObject"] = ""
			want[p+"Grant+Redeem / presigned GET"] = ""
			want[p+"cond PUT / GetObject"] = ""
		}
	}
	for _, sz := range []string{"4KiB", "256KiB", "1MiB", "5MiB"} {
		tg := map[string]string{"1MiB": ">= 0.6x", "5MiB": ">= 0.6x"}[sz]
		want["crypto encrypt "+sz+" throughput at p50: idvault / AES-GCM"] = tg
		want["crypto decrypt "+sz+" throughput at p50: idvault / AES-GCM"] = tg
	}
	for _, w := range []string{"1", "8", "64"} {
		want["audit fsstore "+w+" writers durable records/s (plain: write+fsync)"] = map[string]string{"64": ">= 20000 records/s"}[w]
		want["audit s3store "+w+" writers durable records/s"] = ""
	}
	mem := sizeName(memSizeOf(res))
	want["memory "+mem+" Put peak RSS (plain: PutObject)"] = "<= 64 MiB"
	want["memory "+mem+" Redeem peak RSS (plain: GetObject)"] = "<= 64 MiB"
	for name, tg := range want {
		got, ok := targets[name]
		if !ok {
			t.Errorf("missing check %q", name)
		} else if got != tg {
			t.Errorf("check %q: target %q, want %q", name, got, tg)
		}
	}
	if len(targets) != len(want) {
		t.Errorf("%d checks, want %d", len(targets), len(want))
	}
}

// haveRedis: the harness runs the redislimiter contenders (under CI=true
// it fails without redis-server, so the rows are always expected there).
func haveRedis() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil || os.Getenv("CI") == "true"
}

func memSizeOf(res *Results) int64 {
	for _, m := range res.Measurements {
		if m.Section == "memory" {
			return m.Size
		}
	}
	return 0
}

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: quantile must sort
	}
	tests := []struct {
		name string
		d    []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median odd", ms(3, 1, 2), 0.5, 2 * time.Millisecond},
		{"median even is the lower", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p100", ms(5, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.d)
			if got := quantile(tc.d, tc.q); got != tc.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tc.d, tc.q, got, tc.want)
			}
			if !slices.Equal(in, tc.d) {
				t.Error("quantile reordered its input")
			}
		})
	}
}

// TestInterleave checks that contenders alternate in rotating order, that
// warm-up rounds are dropped and that concurrent rounds run conc calls.
func TestInterleave(t *testing.T) {
	var mu sync.Mutex
	var order []string
	mk := func(name string) *contender {
		return &contender{name: name, op: func(context.Context) (time.Duration, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return time.Microsecond, nil
		}}
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	if err := interleave(context.Background(), 1, 3, 1, []*contender{a, b, c}); err != nil {
		t.Fatal(err)
	}
	want := strings.Split("abc bca cab abc", " ")
	if got := strings.Join(order, ""); got != strings.Join(want, "") {
		t.Errorf("order %s, want %s", got, strings.Join(want, ""))
	}
	for _, x := range []*contender{a, b, c} {
		if len(x.lat) != 3 || x.ops != 3 || len(x.part) != 3 || x.busy <= 0 {
			t.Errorf("%s: %d latencies, %d ops, %d parts, busy %v; want 3 recorded rounds", x.name, len(x.lat), x.ops, len(x.part), x.busy)
		}
	}

	order = nil
	d := mk("d")
	d.reps = 10
	if err := interleave(context.Background(), 0, 2, 8, []*contender{d}); err != nil {
		t.Fatal(err)
	}
	if len(order) != 16 || len(d.lat) != 16 || d.ops != 160 {
		t.Errorf("conc 8 × 2 rounds × reps 10: %d calls, %d latencies, %d ops", len(order), len(d.lat), d.ops)
	}

	e := &contender{name: "e", op: func(context.Context) (time.Duration, error) { return 0, os.ErrClosed }}
	if err := interleave(context.Background(), 0, 1, 8, []*contender{e}); err == nil || !strings.Contains(err.Error(), "e:") {
		t.Errorf("failing op: err %v", err)
	}
}

func TestNewCheck(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name            string
		value, baseline float64
		t               *target
		target          string
		met             *bool
	}{
		{"ratio under bound", 1.1, 1, atMost(1.15), "<= 1.15x", &yes},
		{"ratio over bound", 1.2, 1, atMost(1.15), "<= 1.15x", &no},
		{"ratio at bound", 2, 1, atMost(2), "<= 2x", &yes},
		{"at least met", 0.7, 1, atLeast(0.6), ">= 0.6x", &yes},
		{"at least missed", 0.5, 1, atLeast(0.6), ">= 0.6x", &no},
		{"no baseline fails a ratio target", 1, 0, atMost(2), "<= 2x", &no},
		{"value bound met, baseline ignored", 40, 200, valueAtMost(64, "MiB"), "<= 64 MiB", &yes},
		{"value bound missed", 65, 10, valueAtMost(64, "MiB"), "<= 64 MiB", &no},
		{"value floor met", 25000, 0, valueAtLeast(20000, "records/s"), ">= 20000 records/s", &yes},
		{"zero value never meets", 0, 0, valueAtMost(64, "MiB"), "<= 64 MiB", &no},
		{"no target", 3, 1, nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCheck("x", "p50_ms", tc.value, tc.baseline, tc.t)
			if c.Target != tc.target {
				t.Errorf("target %q, want %q", c.Target, tc.target)
			}
			if (c.Met == nil) != (tc.met == nil) || (c.Met != nil && *c.Met != *tc.met) {
				t.Errorf("met %v, want %v", fmtBool(c.Met), fmtBool(tc.met))
			}
			if tc.baseline > 0 && c.Ratio != tc.value/tc.baseline {
				t.Errorf("ratio %v", c.Ratio)
			}
		})
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

func TestParseOnly(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"put,redeem,crypto,memory,audit", sections, true},
		{"audit, put", []string{"put", "audit"}, true},
		{"crypto,crypto", []string{"crypto"}, true},
		{"put,bogus", nil, false},
		{"", nil, false},
		{" , ", nil, false},
	}
	for _, tc := range tests {
		got, err := parseOnly(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseOnly(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestCLIUsage: bad flags exit 2 without starting a server.
func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"-only", "nope"}, {"-bogus"}, {"extra"}, {"-memsize", "10"}} {
		var out, errb bytes.Buffer
		start := func() (server, func(), error) {
			t.Errorf("%v: started a server", args)
			return server{}, func() {}, nil
		}
		if code := cli(args, &out, &errb, start); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestSecretsRedacted: the types that carry the MinIO secret and the KEK
// passphrase print neither, under any verb.
func TestSecretsRedacted(t *testing.T) {
	const secret, pass = "s3cr3t-minio-key", "k3k-passphrase"
	srv := server{Endpoint: "127.0.0.1:9000", AccessKey: "root", SecretKey: secret}
	spec := childSpec{Mode: modeVaultPut, Server: srv, Passphrase: []byte(pass)}
	for _, v := range []any{srv, &srv, spec, &spec} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			s := fmt.Sprintf(verb, v)
			for _, bad := range []string{secret, pass, fmt.Sprintf("%x", secret), fmt.Sprintf("%x", pass), fmt.Sprint([]byte(pass))} {
				if strings.Contains(s, bad) {
					t.Errorf("%s of %T prints a secret (output withheld)", verb, v)
				}
			}
		}
	}
}

func TestSizeName(t *testing.T) {
	for n, want := range map[int64]string{4 << 10: "4KiB", 256 << 10: "256KiB", 1 << 20: "1MiB", 100 << 20: "100MiB", 1000: "1000B", 1536 << 10: "1536KiB"} {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}
