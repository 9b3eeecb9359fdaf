package vault

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/fsstore"
)

const rewrapChildEnv = "IDVAULT_TEST_REWRAP_CHILD"

// cheapLocal are argon2id parameters fit for tests only.
var cheapLocal = kms.LocalOptions{Time: 1, MemoryKiB: 64, Threads: 1}

const killPassphrase = "test passphrase, not a secret"

// rewrapChild opens the vault in $IDVAULT_TEST_REWRAP_CHILD with KEK b
// (and a to open), and rewraps a -> b one record at a time, printing a line
// per record, until it is killed.
func rewrapChild() int {
	dir := os.Getenv(rewrapChildEnv)
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	a, err := kms.OpenLocal(filepath.Join(dir, "kek-a"), []byte(killPassphrase))
	if err != nil {
		return fail(err)
	}
	b, err := kms.OpenLocal(filepath.Join(dir, "kek-b"), []byte(killPassphrase))
	if err != nil {
		return fail(err)
	}
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return fail(err)
	}
	v, err := Open(ctx, Config{Store: st, KEK: b, Storage: StorageConfig{DecryptKEKs: []kms.KEK{a}}})
	if err != nil {
		return fail(err)
	}
	w := bufio.NewWriter(os.Stdout)
	_, err = v.Admin().Rewrap(ctx, a, b, Actor{Principal: "child"}, RewrapOptions{Workers: 1, Progress: func(p RewrapProgress) {
		fmt.Fprintln(w, p.Done)
		w.Flush()
		time.Sleep(2 * time.Millisecond) // pace the child so the parent can kill it mid-run
	}})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(w, "done")
	w.Flush()
	return 0
}

// TestRewrapSurvivesSIGKILL kills a rewrapping process mid-run while this
// one redeems: no redemption fails, the vault is left half under each KEK
// and fully readable, and a rerun completes the migration.
func TestRewrapSurvivesSIGKILL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := kms.CreateLocal(filepath.Join(dir, "kek-a"), []byte(killPassphrase), cheapLocal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kms.CreateLocal(filepath.Join(dir, "kek-b"), []byte(killPassphrase), cheapLocal)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
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
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
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
	sc := bufio.NewScanner(out)
	lines := 0
	for sc.Scan() && lines < n/3 {
		lines++
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	wg.Wait()
	if lines < n/3 {
		t.Fatalf("the child stopped after %d records", lines)
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
