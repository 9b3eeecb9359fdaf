package audit

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/fsstore"
)

const crashDirEnv = "IDVAULT_AUDIT_CRASH_DIR"

// TestCrashChild is the child process of TestCrash: it appends to an
// fsstore directory from 8 goroutines until killed, printing "<log> <seq>"
// for each Append that returned nil. The first line is the verifier key
// (the signing key never leaves the process).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrash")
	}
	st, err := fsstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The fixed test key: the parent continues the crashed log with it.
	skey, vkey := keys(t)
	a, err := NewAppender(context.Background(), st, skey, AppenderOptions{CheckpointRecords: 20, CheckpointEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "key %s\n", vkey)
	out.Flush()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r, err := a.Append(context.Background(), sampleRecord(w*1_000_000+i))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "%s %d\n", r.Log, r.Seq)
				out.Flush() // printed only once durable
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrash kills an appending child process with SIGKILL at a random
// moment, then checks that the log verifies (an unsealed tail allowed)
// and holds every record the child saw acknowledged.
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	runs := 20
	if os.Getenv("CI") == "true" {
		runs = 100
	}
	if testing.Short() {
		runs = 5
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for run := range runs {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		child := testenv.StartChild(t, cmd)
		vkey := strings.TrimPrefix(child.Expect(t, "key "), "key ")
		delay := time.Duration(1+rand.IntN(30)) * time.Millisecond
		timer := time.AfterFunc(delay, func() { cmd.Process.Kill() }) // SIGKILL
		acked := map[string]int64{}                                   // log -> highest acknowledged seq
		for child.Lines.Scan() {
			log, seqStr, ok := strings.Cut(child.Lines.Text(), " ")
			seq, err := strconv.ParseInt(seqStr, 10, 64)
			if !ok || err != nil {
				continue // a line cut by the kill
			}
			acked[log] = max(acked[log], seq)
			total++
		}
		timer.Stop()
		child.Kill()
		if strings.Contains(child.Stderr(), "audit:") {
			t.Fatalf("run %d: child failed: %s", run, child.Stderr())
		}
		st, err := fsstore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), st, vkey, VerifyOptions{})
		if err != nil {
			t.Fatalf("run %d (killed after %v): %v", run, delay, err)
		}
		records := map[string]int64{}
		for _, l := range rep.Logs {
			records[l.Log] = l.Records
			if l.Final {
				t.Fatalf("run %d: a killed appender wrote a final checkpoint", run)
			}
		}
		// Verify found no gap, so a log of n records holds seqs 0..n-1.
		for log, seq := range acked {
			if records[log] <= seq {
				t.Fatalf("run %d: seq %d of log %s was acknowledged but the log holds %d records", run, seq, log, records[log])
			}
		}
		// The next appender, once the dead writer's lease has expired,
		// continues its log (sealing its tail) instead of starting one.
		later := func() time.Time { return time.Now().Add(2 * DefaultLeaseTTL) }
		skey, _ := keys(t)
		// Judged on that clock, not the filesystem's (noClock).
		a, err := NewAppender(context.Background(), noClock{st}, skey, AppenderOptions{Now: later})
		if err != nil {
			t.Fatalf("run %d: open after the crash: %v", run, err)
		}
		if _, ok := records[a.LogID()]; !ok && len(records) > 0 {
			t.Fatalf("run %d: a new log %s after the crash, not one of %v", run, a.LogID(), records)
		}
		if _, err := a.Append(context.Background(), sampleRecord(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		rep, err = Verify(context.Background(), st, vkey, VerifyOptions{Now: later})
		if err != nil {
			t.Fatalf("run %d: after continuing the crashed log: %v", run, err)
		}
		for _, l := range rep.Logs {
			if l.Unsealed != 0 || l.Records < records[l.Log] {
				t.Fatalf("run %d: after continuing: %+v", run, l)
			}
		}
	}
	t.Logf("%d runs, %d acknowledged records, all present", runs, total)
}
