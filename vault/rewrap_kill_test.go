package vault

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
)

const rewrapChildEnv = "IDVAULT_TEST_REWRAP_CHILD"

// rewrapChild opens the vault in $IDVAULT_TEST_REWRAP_CHILD with KEK b
// (and a to open), and rewraps a -> b one record at a time, printing a line
// per record, until it is killed.
func rewrapChild() int {
	dir := os.Getenv(rewrapChildEnv)
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	st, a, err := testenv.OpenSharedDir(dir)
	if err != nil {
		return fail(err)
	}
	b, err := kektest.OpenFile(filepath.Join(dir, "kek-b"))
	if err != nil {
		return fail(err)
	}
	v, err := Open(ctx, Config{Store: st, KEK: b, Storage: StorageConfig{DecryptKEKs: []kms.KEK{a}}})
	if err != nil {
		return fail(err)
	}
	acks := testenv.NewAcks()
	_, err = v.Admin().Rewrap(ctx, a, b, Actor{Principal: "child"}, RewrapOptions{Workers: 1, Progress: func(p RewrapProgress) {
		acks.Printf("%d", p.Done)
		time.Sleep(2 * time.Millisecond) // pace the child so the parent can kill it mid-run
	}})
	if err != nil {
		return fail(err)
	}
	acks.Printf("done")
	return 0
}

// TestRewrapSurvivesSIGKILL kills a rewrapping process mid-run while this
// one redeems: no redemption fails, the vault is left half under each KEK
// and fully readable, and a rerun completes the migration.
func TestRewrapSurvivesSIGKILL(t *testing.T) {
	ctx := context.Background()
	dir, st, a := testenv.SharedDir(t)
	b := kektest.CreateFile(t, filepath.Join(dir, "kek-b"))
	v, err := Open(ctx, Config{Store: st, KEK: a, Storage: StorageConfig{DecryptKEKs: []kms.KEK{b}}, Detection: DetectionConfig{Quota: Quota{Documents: 100000, Redemptions: 100000, Burst: 100000}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	const n = 120
	ids := make([]string, n)
	imgs := make([][]byte, n)
	for i := range n {
		imgs[i] = image(600+i, "")
		info, err := v.Put(ctx, Document{Body: bytes.NewReader(imgs[i]), Size: int64(len(imgs[i])), Subject: "s", Kind: "id"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = info.ID
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), rewrapChildEnv+"="+dir)
	child := testenv.StartChild(t, cmd)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	wg.Go(func() {
		until(stop, func(i int) bool {
			if err := grantRead(ctx, &testVault{Vault: v}, ids[i%n], imgs[i%n]); err != nil {
				t.Errorf("redemption during the rewrap: %v", err)
				failed.Add(1)
				return false
			}
			served.Add(1)
			return true
		})
	})
	lines := 0
	for child.Lines.Scan() && lines < n/3 {
		lines++
	}
	child.Kill()
	close(stop)
	wg.Wait()
	if lines < n/3 {
		t.Fatalf("the child stopped after %d records: %s", lines, child.Stderr())
	}
	counts := kekIDs(t, st)
	if counts[a.ID()] == 0 || counts[b.ID()] == 0 {
		t.Fatalf("not killed mid-run: %v", counts)
	}
	if failed.Load() > 0 || served.Load() == 0 {
		t.Fatalf("%d redemptions failed, %d served", failed.Load(), served.Load())
	}
	// Resume here; then b alone opens everything.
	rep, err := v.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Already < lines || rep.Rewrapped+rep.Already != n || rep.Remaining != 0 {
		t.Fatalf("resumed: %+v after %d records in the child", rep, lines)
	}
	w, err := Open(ctx, Config{Store: st, KEK: b, Detection: DetectionConfig{Quota: Quota{Documents: 100000, Redemptions: 100000, Burst: 100000}}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	for i, id := range ids {
		g, err := w.Grant(ctx, id, Access{Principal: "reviewer", Purpose: "check"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := redeemAll(&testVault{Vault: w}, g.Token, "reviewer")
		if err != nil || !bytes.Equal(got, imgs[i]) {
			t.Fatalf("document %d after resume: %v", i, err)
		}
	}
}
