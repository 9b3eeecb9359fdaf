package vault

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault/audit"
)

const redeemCrashEnv = "IDVAULT_REDEEM_CRASH_DIR"

// redeemCrashChild redeems the tokens listed in dir/tokens from 8
// goroutines until killed, printing "spent <token-id>" once Redeem has
// returned a reader (the spend entry is durable by then).
func redeemCrashChild(dir string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	st, kek, err := testenv.OpenSharedDir(dir)
	if err != nil {
		return fail(err)
	}
	v, err := Open(context.Background(), Config{Store: st, KEK: kek, Access: AccessConfig{MaxStreamsPerPrincipal: 64}, Detection: DetectionConfig{Quota: Quota{Documents: 1 << 20, Redemptions: 1 << 20, Burst: 1 << 20}}})
	if err != nil {
		return fail(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tokens"))
	if err != nil {
		return fail(err)
	}
	toks := strings.Fields(string(b))
	acks := testenv.NewAcks()
	acks.Printf("ready")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(toks); i += 8 {
				rc, _, err := v.Redeem(context.Background(), toks[i], Requester{Principal: "r"})
				if err != nil {
					continue
				}
				acks.Printf("spent %d", i)
				io.Copy(io.Discard, rc)
				rc.Close()
			}
		})
	}
	wg.Wait()
	time.Sleep(time.Hour) // wait for the kill
	return 0
}

// TestRedeemCrash kills a redeeming child with SIGKILL at a random moment,
// then checks the new redemption path's invariant: every token the child
// saw spent has its spend entry; after the next Open adopts what the child
// left un-folded, every spend entry is folded exactly once, CheckLedger
// finds nothing wrong and the logs verify; no release record lacks its
// spend entry.
func TestRedeemCrash(t *testing.T) {
	runs := 4
	if testing.Short() {
		runs = 2
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A run whose kill came before the child spent anything checked
	// nothing: it does not count, and the test runs again, up to 3x runs
	// attempts (on a busy machine the child starts slowly).
	checked := 0
	for run := 0; checked < runs; run++ {
		if run >= 3*runs {
			t.Fatalf("%d runs, %d of them killed after a spend: the test checked too little", run, checked)
		}
		dir, st, kek := testenv.SharedDir(t)
		setup, err := Open(ctx, Config{Store: st, KEK: kek, Detection: DetectionConfig{Quota: Quota{Documents: 1 << 20, Redemptions: 1 << 20, Burst: 1 << 20}}})
		if err != nil {
			t.Fatal(err)
		}
		info, err := setup.Put(ctx, Document{Body: bytes.NewReader(image(32<<10, "")), Size: 32 << 10, Subject: "m"})
		if err != nil {
			t.Fatal(err)
		}
		var toks []string
		for range 80 {
			g, err := setup.Grant(ctx, info.ID, Access{Principal: "r", Purpose: "p"})
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, g.Token)
		}
		setup.Close(ctx)
		if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(strings.Join(toks, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^$", "-test.count=1")
		cmd.Env = append(os.Environ(), redeemCrashEnv+"="+dir)
		child := testenv.StartChild(t, cmd)
		child.Expect(t, "ready")
		delay := testenv.Scale(time.Duration(5+rand.IntN(150)) * time.Millisecond)
		timer := time.AfterFunc(delay, func() { cmd.Process.Kill() }) // SIGKILL
		spent := map[int]bool{}
		for child.Lines.Scan() {
			var i int
			if _, err := fmt.Sscanf(child.Lines.Text(), "spent %d", &i); err == nil {
				spent[i] = true
			}
		}
		timer.Stop()
		child.Kill()
		if len(spent) > 0 {
			checked++
		}

		// The next instance adopts what it has seen stray for adoptAfter
		// (Open's first pass sees them; its second pass, adoptAfter later,
		// adopts them: here the wait is skipped).
		v, err := Open(ctx, Config{Store: st, KEK: kek})
		if err != nil {
			t.Fatal(err)
		}
		v.adopting.Wait()
		ageStrays(v, adoptAfter+time.Second)
		for range 2 { // and again: adoption is idempotent
			if err := v.adoptLedger(ctx); err != nil {
				t.Fatal(err)
			}
		}
		v.fold.sync(ctx)
		sealer := v.sealer
		entries := map[string]bool{}
		for _, k := range storeKeys(t, st, audit.LedgerPrefix) {
			entries[strings.TrimPrefix(k, audit.LedgerPrefix)] = true
		}
		for i := range spent {
			c, err := sealer.Open(toks[i])
			if err != nil {
				t.Fatal(err)
			}
			if !entries[tokenHex(c.ID)] {
				t.Fatalf("run %d: token %d was served but has no spend entry", run, i)
			}
		}
		released := releases(t, st)
		for tok := range released {
			if !entries[tok] {
				t.Fatalf("run %d: token %s has a release record but no spend entry", run, tok)
			}
		}
		if len(released) != len(entries) {
			t.Fatalf("run %d: %d spend entries, %d folded releases", run, len(entries), len(released))
		}
		rep, err := audit.CheckLedger(ctx, st, v.AuditVerifierKey(), audit.LedgerCheckOptions{Now: v.now})
		if err != nil || len(rep.Problems) != 0 || rep.Pending != 0 {
			t.Fatalf("run %d: ledger check: %+v %v", run, rep, err)
		}
		v.Close(ctx)
		if _, err := audit.Verify(ctx, st, v.AuditVerifierKey(), audit.VerifyOptions{}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		t.Logf("run %d: killed after %v; %d spent, %d entries, all folded once", run, delay, len(spent), len(entries))
	}
}
