package faulttest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
)

const (
	crashDirEnv   = "IDVAULT_FAULT_CRASH_DIR"
	crashDocBytes = 4 << 10
)

// crashChild is the child process of TestFaultCrashLoop (dispatched from
// TestMain): it Puts documents into an fsstore vault from 4 goroutines
// until killed, printing "ok <id>" once each Put has returned nil.
func crashChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	st, kek, err := testenv.OpenSharedDir(os.Getenv(crashDirEnv))
	if err != nil {
		return fail(err)
	}
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek})
	if err != nil {
		return fail(err)
	}
	acks := testenv.NewAcks()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			b := jpeg(crashDocBytes)
			for i := 0; ; i++ {
				info, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: fmt.Sprintf("crash-%d-%d", w, i)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				acks.Printf("ok %s", info.ID) // printed only once Put returned
			}
		})
	}
	wg.Wait()
	return 0
}

// TestFaultCrashLoop SIGKILLs a writer process at random moments, 6 times:
// every Put it acknowledged is present, readable and has its "put ok"
// record; no "put ok" record names a document that is missing; the audit
// log verifies.
func TestFaultCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	dir, st, kek := testenv.SharedDir(t)
	var acked []string
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		child := testenv.StartChild(t, cmd)
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			for child.Lines.Scan() {
				lines <- child.Lines.Text()
			}
		}()
		// Kill after the first few acknowledgements plus a random delay,
		// so the kill lands anywhere in a Put.
		killAt := time.After(5 * time.Second)
		n := 0
		var got []string
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				got = append(got, l)
				if n++; n == 3 {
					killAt = time.After(time.Duration(rand.IntN(150)) * time.Millisecond)
				}
			case <-killAt:
				break wait
			}
		}
		cmd.Process.Kill()
		for l := range lines {
			got = append(got, l)
		}
		child.Kill() // reaps it
		if n == 0 {
			t.Fatalf("round %d: the child acknowledged nothing; stderr:\n%s", round, child.Stderr())
		}
		for _, l := range got {
			if id, ok := strings.CutPrefix(l, "ok "); ok && len(id) == 32 {
				acked = append(acked, id)
			}
		}
	}
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(context.Background())
	audited := map[string]bool{}
	for _, r := range records(t, st, audit.Filter{Event: audit.EventPut, Outcome: audit.OutcomeOK}) {
		audited[r.Object] = true
	}
	for _, id := range acked {
		if !exists(t, st, "keys/"+id) || !exists(t, st, "blobs/"+id) {
			t.Errorf("an acknowledged Put is missing")
		}
		if !audited[id] {
			t.Errorf("an acknowledged Put has no put ok record")
		}
	}
	checkPutTrail(t, st)
	for _, id := range acked[:3] {
		g := grant(t, v, id)
		rc, _, err := v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-1"})
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != crashDocBytes {
			t.Fatalf("acknowledged document read back %d bytes, %v", n, err)
		}
	}
	if rep, err := audit.Verify(context.Background(), st, v.AuditVerifierKey(), audit.VerifyOptions{}); err != nil {
		t.Fatalf("audit verify after %d kills: %v (%+v)", 6, err, rep.Problems())
	}
	t.Logf("%d acknowledged Puts over 6 kills: all present and audited", len(acked))
}
