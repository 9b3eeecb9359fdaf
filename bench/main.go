package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
)

// sections are the parts of the harness, in the order they run.
var sections = []string{"put", "redeem", "crypto", "memory", "audit"}

// options are the harness settings that the flags set.
type options struct {
	quick   bool
	only    []string // sections to run, in run order
	out     string
	memSize int64  // object size of the memory section
	exe     string // the binary re-executed for the memory section's children
	trace   bool   // time the vault's store calls (tracingStore)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain(os.Stdin, os.Stdout))
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr, startMinIO))
}

// startMinIO starts the MinIO server the harness runs against and returns
// how to reach it and how to stop it.
func startMinIO() (server, func(), error) {
	srv, err := miniotest.Start()
	if err != nil {
		return server{}, nil, err
	}
	return serverOf(srv), srv.Stop, nil
}

// cli is the command: parse flags, start MinIO with start, run, report. It
// returns the exit status.
func cli(args []string, stdout, stderr io.Writer, start func() (server, func(), error)) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "few iterations: a smoke test, not a measurement")
	only := fs.String("only", strings.Join(sections, ","), "comma-separated sections to run: "+strings.Join(sections, ", "))
	out := fs.String("out", "bench/results.json", "write the results as JSON to this file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the harness process (pprof) to this file")
	memprofile := fs.String("memprofile", "", "write a heap profile (pprof; includes alloc_space) at the end to this file")
	memSize := fs.Int64("memsize", 100<<20, "object size of the memory section, bytes")
	trace := fs.Bool("tracestore", false, "time every store call the vault makes in the put and redeem sections, by key class")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench [flags]\n\nCompares idvault with plain MinIO, age and AES-GCM in one run; see go doc ./bench.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	sel, err := parseOnly(*only)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if *memSize < 1<<10 {
		fmt.Fprintln(stderr, "bench: -memsize must be at least 1024")
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	opts := options{quick: *quick, only: sel, out: *out, memSize: *memSize, exe: exe, trace: *trace}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintln(stderr, "bench: starting MinIO on loopback")
	srv, stopServer, err := start()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer stopServer()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	res, err := run(ctx, opts, srv, stderr)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if *memprofile != "" {
		if err := writeHeapProfile(*memprofile); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	res.print(stdout)
	if err := res.writeJSON(opts.out); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench: wrote %s\n", opts.out)
	return 0
}

// parseOnly turns "put,redeem" into the selected sections in run order.
func parseOnly(s string) ([]string, error) {
	want := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(sections, p) {
			return nil, fmt.Errorf("-only: unknown section %q (have %s)", p, strings.Join(sections, ", "))
		}
		want[p] = true
	}
	if len(want) == 0 {
		return nil, errors.New("-only: no section selected")
	}
	var sel []string
	for _, s := range sections {
		if want[s] {
			sel = append(sel, s)
		}
	}
	return sel, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // up-to-date in-use figures; alloc_space covers the whole run anyway
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// run executes the selected sections against the MinIO server srv and
// returns what they measured. Progress goes to log.
func run(ctx context.Context, opts options, srv server, log io.Writer) (*Results, error) {
	res := &Results{Meta: Meta{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Quick: opts.quick, Sections: opts.only,
	}}
	e, err := newEnv(ctx, opts, srv, res)
	if err != nil {
		return nil, err
	}
	defer e.close()
	steps := map[string]func(context.Context) error{
		"put": e.benchPut, "redeem": e.benchRedeem, "crypto": e.benchCrypto,
		"memory": e.benchMemory, "audit": e.benchAudit,
	}
	for _, s := range opts.only {
		fmt.Fprintf(log, "bench: %s\n", s)
		t0 := time.Now()
		if err := steps[s](ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		fmt.Fprintf(log, "bench: %s done in %.1fs\n", s, time.Since(t0).Seconds())
	}
	if e.trace != nil {
		res.StoreOps = e.trace.report()
	}
	if e.rtrace != nil {
		res.StoreOps = append(res.StoreOps, e.rtrace.report()...)
	}
	res.Meta.Seconds = time.Since(res.Meta.Started).Seconds()
	return res, nil
}
