package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/envelope"
	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// kekIDs returns the KEK ID of every key record in st.
func kekIDs(t testing.TB, st store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, k := range storeKeys(t, st, "keys/") {
		id, err := envelope.PeekKEKID(readKey(t, st, k))
		if err != nil {
			t.Fatal(err)
		}
		out[id]++
	}
	return out
}

// putDocs puts n documents into v, the i-th of size+i bytes, marked
// doc-i, for subject(i), and returns their IDs and bytes.
func putDocs(t *testing.T, v *testVault, n, size int, subject func(i int) string) (ids []string, imgs [][]byte) {
	t.Helper()
	ids, imgs = make([]string, n), make([][]byte, n)
	for i := range n {
		imgs[i] = image(size+i, fmt.Sprintf("doc-%d", i))
		ids[i] = putImage(t, v, imgs[i], subject(i)).ID
	}
	return ids, imgs
}

// TestRewrapMigratesVault moves a vault from KEK a to KEK b: afterwards a
// vault opened with b alone has the same ID, serves every document and a
// token granted before the move, keeps the legal hold, and no payload byte
// changed.
func TestRewrapMigratesVault(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.new(t)
			a, b := testKEK(t), testKEK(t)
			v := openTestVault(t, st, a, nil)
			const n = 12
			ids, imgs := putDocs(t, v, n, 2000, func(i int) string { return fmt.Sprintf("subject-%d", i) })
			if err := v.Admin().Hold(ctx, ids[0], testActor); err != nil {
				t.Fatal(err)
			}
			early := grant(t, v, ids[1], "reviewer")
			blobs := map[string][]byte{}
			for _, k := range storeKeys(t, st, "blobs/") {
				blobs[k] = readKey(t, st, k)
			}

			if _, err := v.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("rewrap on an instance that cannot open the new KEK: %v", err)
			}
			v.Close(ctx)
			v = openTestVault(t, st, a, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{b} })
			if _, err := v.Admin().Rewrap(ctx, a, b, Actor{}, RewrapOptions{}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("empty actor: %v", err)
			}
			var last RewrapProgress
			rep, err := v.Admin().Rewrap(ctx, a, b, Actor{Principal: "sec-team", Reason: "CHG-42"}, RewrapOptions{Progress: func(p RewrapProgress) { last = p }})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Keyset || rep.Rewrapped != n || rep.Remaining != 0 || rep.Already+rep.Other+rep.Gone+rep.Busy != 0 {
				t.Fatalf("report %+v", rep)
			}
			if last.Done != n || last.Total != n {
				t.Fatalf("progress %+v", last)
			}
			if got := kekIDs(t, st); len(got) != 1 || got[b.ID()] != n {
				t.Fatalf("key records per KEK after rewrap: %v", got)
			}
			for k, want := range blobs {
				if !bytes.Equal(readKey(t, st, k), want) {
					t.Fatalf("payload %s changed", k)
				}
			}
			// A rerun has nothing left to do.
			rep, err = v.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
			if err != nil || rep.Keyset || rep.Already != n || rep.Rewrapped != 0 {
				t.Fatalf("rerun: %+v %v", rep, err)
			}

			// Only b from now on: a could be disabled.
			v.Close(ctx)
			w := openTestVault(t, st, b, nil)
			if w.ID() != v.ID() {
				t.Fatal("vault ID changed")
			}
			got, err := redeemAll(w, early.Token, "reviewer")
			if err != nil || !bytes.Equal(got, imgs[1]) {
				t.Fatalf("token granted before the rewrap: %v", err)
			}
			for i, id := range ids {
				got, err := redeemAll(w, grant(t, w, id, "reviewer").Token, "reviewer")
				if err != nil || !bytes.Equal(got, imgs[i]) {
					t.Fatalf("document %d after rewrap: %v", i, err)
				}
			}
			if err := w.Admin().Delete(ctx, ids[0], testActor); !errors.Is(err, ErrHeld) {
				t.Fatalf("legal hold lost: %v", err)
			}
			// A vault with only a cannot open it any more.
			if _, err := Open(ctx, Config{Store: st, KEK: a}); !errors.Is(err, ErrWrongKEK) {
				t.Fatalf("open with the old KEK alone: %v", err)
			}
			// Audited with the actor, start and end.
			var outcomes []string
			for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRotate}) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Principal == "sec-team" && r.Reason == "kek-rewrap" && strings.Contains(r.Detail, "CHG-42") {
					outcomes = append(outcomes, string(r.Outcome))
				}
			}
			if strings.Join(outcomes, ",") != "started,ok" {
				t.Fatalf("audit of the rewrap: %v", outcomes)
			}
		})
	}
}

// TestRewrapWhileServing runs Rewrap on one instance while others redeem
// (one wrapping with the new KEK, one still with the old, both opening
// either) and keep putting: not one redemption fails, and a second run
// leaves nothing under the old KEK.
func TestRewrapWhileServing(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.new(t)
			a, b := testKEK(t), testKEK(t)
			old := openTestVault(t, st, a, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{b} })
			const n = 24
			ids, imgs := putDocs(t, old, n, 1500, func(int) string { return "s" })
			// Short-lived documents that a sweeper shreds during the rewrap:
			// none of them may come back.
			var short []string
			for range 10 {
				img := image(700, "")
				info, err := old.Put(ctx, Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "t", Retention: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				short = append(short, info.ID)
			}
			sweeper := openTestVault(t, st, b, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{a} })
			sweeper.clock.Advance(2 * time.Hour)
			migrated := openTestVault(t, st, b, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{a} })
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var served, failed, refused atomic.Int64
			var failMsg atomic.Value
			for _, inst := range []*testVault{old, migrated} {
				wg.Go(func() {
					until(stop, func(i int) bool {
						err := grantRead(ctx, inst, ids[i%n], imgs[i%n])
						switch {
						case errors.Is(err, ErrQuotaExceeded) || errors.Is(err, ErrFrozen):
							refused.Add(1) // the abuse limits, not the KEK
						case err != nil:
							failed.Add(1)
							failMsg.Store(err.Error())
						default:
							served.Add(1)
						}
						return true
					})
				})
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := sweeper.Admin().Sweep(ctx, testActor); err != nil {
						t.Errorf("sweep during the rewrap: %v", err)
						return
					}
				}
			})
			wg.Go(func() { // an instance not yet switched keeps wrapping with a
				for range 5 {
					putImage(t, old, image(900, ""), "late")
				}
			})
			rewrapper := openTestVault(t, st, b, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{a} })
			rep, err := rewrapper.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{Workers: 1})
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if failed.Load() > 0 {
				t.Fatalf("%d of %d redemptions failed during the rewrap, e.g. %v", failed.Load(), failed.Load()+served.Load(), failMsg.Load())
			}
			// The redeemers must have overlapped the rewrap (a handful is
			// enough: each one opened a record mid-migration). Shared quota
			// counts make each redemption several store writes, so under
			// -race on 2 cores only a few fit.
			if served.Load() < 3 {
				t.Fatalf("only %d redemptions served during the rewrap (%d refused by quota)", served.Load(), refused.Load())
			}
			if rep.Rewrapped < n {
				t.Fatalf("report %+v", rep)
			}
			for _, id := range short {
				oid, _ := parseObjectID(id)
				if _, err := st.Get(ctx, keyRecordKey(oid)); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("a swept document's key record is there after the rewrap: %v", err)
				}
			}
			rep, err = rewrapper.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
			if err != nil || rep.Remaining != 0 {
				t.Fatalf("second run: %+v %v", rep, err)
			}
			u, err := rewrapper.Admin().KEKCounts(ctx)
			if err != nil || u.Keyset != b.ID() || len(u.Records) != 1 || u.Records[b.ID()] != n+5 {
				t.Fatalf("usage %+v %v", u, err)
			}
		})
	}
}

// hookStore runs hook before the first unconditional Put of a key record
// (Rewrap's write), then performs the Put.
type hookStore struct {
	store.Store
	once sync.Once
	hook func()
}

func (h *hookStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts store.PutOptions) error {
	if strings.HasPrefix(key, "keys/") && !opts.IfAbsent {
		h.once.Do(h.hook)
	}
	return h.Store.Put(ctx, key, body, size, opts)
}

// TestRewrapDoesNotResurrectShredded deletes a document on another
// instance between Rewrap's last read of its key record and its write:
// the rewritten record must not outlive the shred (that would undo
// crypto-shredding for any surviving copy of the payload).
func TestRewrapDoesNotResurrectShredded(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	a, b := testKEK(t), testKEK(t)
	other := openTestVault(t, st, a, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{b} })
	info := putImage(t, other, image(1000, ""), "s")
	hs := &hookStore{Store: st}
	hs.hook = func() {
		if err := other.Admin().Delete(ctx, info.ID, testActor); err != nil {
			t.Error(err)
		}
	}
	rw := openTestVault(t, hs, b, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{a} })
	rep, err := rw.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if keys := storeKeys(t, st, "keys/"); len(keys) != 0 {
		t.Fatalf("the shredded document's key record is back: %v (report %+v)", keys, rep)
	}
	if rep.Gone != 1 || rep.Rewrapped != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// unavailableKEK answers every Decrypt with kms.ErrUnavailable after the
// first `ok` calls.
type unavailableKEK struct {
	kms.KEK
	ok    int64
	calls atomic.Int64
}

func (u *unavailableKEK) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if u.calls.Add(1) > u.ok {
		return nil, fmt.Errorf("kms: test outage: %w", kms.ErrUnavailable)
	}
	return u.KEK.Decrypt(ctx, ct, ad)
}

// TestRewrapKMSOutage: the old KEK goes away mid-run. Rewrap stops with
// ErrKEKUnavailable, destroys nothing, and a rerun finishes the job.
func TestRewrapKMSOutage(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	a, b := testKEK(t), testKEK(t)
	v := openTestVault(t, st, a, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{b} })
	const n = 10
	imgs := map[string][]byte{}
	for i := range n {
		img := image(800+i, "")
		imgs[putImage(t, v, img, "s").ID] = img
	}
	flaky := &unavailableKEK{KEK: a, ok: 4} // the keyset and 3 records
	rep, err := v.Admin().Rewrap(ctx, flaky, b, testActor, RewrapOptions{Workers: 1})
	if !errors.Is(err, ErrKEKUnavailable) || !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("outage: %v", err)
	}
	if rep.Rewrapped != 3 {
		t.Fatalf("report %+v", rep)
	}
	if got := len(storeKeys(t, st, "keys/")); got != n {
		t.Fatalf("%d key records left of %d", got, n)
	}
	rep, err = v.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
	if err != nil || rep.Rewrapped != n-3 || rep.Already != 3 || rep.Remaining != 0 {
		t.Fatalf("rerun: %+v %v", rep, err)
	}
	w := openTestVault(t, st, b, nil)
	for id, img := range imgs {
		got, err := redeemAll(w, grant(t, w, id, "reviewer").Token, "reviewer")
		if err != nil || !bytes.Equal(got, img) {
			t.Fatalf("after outage and rerun: %v", err)
		}
	}
}

// TestRewrapLeavesTamperedAlone: a key record that does not open under
// the old KEK (edited) or does not parse is counted, left as it is (not
// rewritten, not deleted), and shows in KEKCounts.
func TestRewrapLeavesTamperedAlone(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	a, b := testKEK(t), testKEK(t)
	old := openTestVault(t, st, a, nil)
	v := openTestVault(t, st, b, func(c *Config) { c.Storage.DecryptKEKs = []kms.KEK{a} })
	good := putImage(t, old, image(500, ""), "s")
	bad := putImage(t, old, image(500, ""), "s")
	badID, _ := parseObjectID(bad.ID)
	rec := readKey(t, st, keyRecordKey(badID))
	rec[len(rec)-3] ^= 1 // the wrapped blob, not the header
	if err := st.Put(ctx, keyRecordKey(badID), bytes.NewReader(rec), int64(len(rec)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	junkID, _ := parseObjectID("0123456789abcdef0123456789abcdef")
	if err := st.Put(ctx, keyRecordKey(junkID), strings.NewReader("junk"), 4, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Admin().Rewrap(ctx, a, b, testActor, RewrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rewrapped != 1 || rep.Other != 2 || rep.Remaining != 1 {
		t.Fatalf("report %+v", rep)
	}
	if !bytes.Equal(readKey(t, st, keyRecordKey(badID)), rec) {
		t.Fatal("the tampered record was changed")
	}
	u, err := ReadKEKUsage(ctx, st, nil)
	if err != nil || u.Unreadable != 1 || u.Records[a.ID()] != 1 || u.Records[b.ID()] != 1 {
		t.Fatalf("usage %+v %v", u, err)
	}
	if _, err := v.Grant(ctx, good.ID, Access{Principal: "r", Purpose: "p"}); err != nil {
		t.Fatal(err)
	}
}

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

// FuzzSystemKeysetKEKID: the clear header of a wrapped keyset parses or
// fails with ErrTampered; what parses is bounded, and the canonical
// header of the ID parses back to it.
func FuzzSystemKeysetKEKID(f *testing.F) {
	f.Add(append(systemAD("local:0123456789abcdef"), 1, 2, 3))
	f.Add(systemAD("aws-kms://arn:aws:kms:eu-west-1:1:key/k"))
	f.Add([]byte("IDVS\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := systemKeysetKEKID(b)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if len(id) > 1024 || !bytes.Contains(b, []byte(id)) {
			t.Fatalf("parsed %q, not in the input", id)
		}
		if again, err := systemKeysetKEKID(systemAD(id)); err != nil || again != id {
			t.Fatalf("canonical header of %q parses as %q, %v", id, again, err)
		}
	})
}
