package faulttest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
)

// TestFaultDiskFull: the filesystem store's disk fills up (a 4 MiB tmpfs
// when root; otherwise a store that answers ENOSPC to every write). Put and
// Grant fail by their deadline with an error, nothing half-written stays
// readable, no "put ok" names a missing document, no temporary file is left
// behind; once space is freed the vault works again and the audit log
// verifies.
func TestFaultDiskFull(t *testing.T) {
	disk := t.TempDir()
	real := mountTmpfs(t, disk, "4m")
	fst, err := fsstore.Open(filepath.Join(disk, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	st := &faultStore{Store: fst}
	if !real {
		st.set(func(context.Context, string) error {
			if full.Load() {
				return &fs.PathError{Op: "write", Path: "store", Err: syscall.ENOSPC}
			}
			return nil
		}, nil, nil)
	}
	kek := kektest.New(t)
	v, _ := openVault(t, st, kek, nil)
	info := put(t, v, 0)

	filler := filepath.Join(disk, "filler")
	if real {
		fill(t, filler)
	} else {
		full.Store(true)
	}

	img := jpeg(256 << 10)
	err = within(t, "Put on a full disk", func(ctx context.Context) error {
		_, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-2"})
		return err
	})
	if err == nil {
		t.Fatal("Put succeeded on a full disk")
	}
	err = within(t, "Grant on a full disk", func(ctx context.Context) error {
		_, err := v.Grant(ctx, info.ID, review)
		return err
	})
	if !errors.Is(err, vault.ErrAuditUnavailable) {
		t.Fatalf("Grant on a full disk: %v; want ErrAuditUnavailable (nothing granted without its record)", err)
	}

	if real {
		os.Remove(filler)
	} else {
		full.Store(false)
	}
	if tmp, _ := os.ReadDir(filepath.Join(disk, "store", ".tmp")); len(tmp) != 0 {
		t.Errorf("%d temporary files left after the failed writes", len(tmp))
	}
	checkPutTrail(t, fst)
	info2 := put(t, v, 0)
	for _, id := range []string{info.ID, info2.ID} {
		g, err := v.Grant(context.Background(), id, review)
		if err != nil {
			t.Fatalf("Grant after space was freed: %v", err)
		}
		rc, _, err := v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-1"})
		if err != nil {
			t.Fatalf("Redeem after space was freed: %v", err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err := v.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(context.Background(), fst, v.AuditVerifierKey(), audit.VerifyOptions{}); err != nil {
		t.Fatalf("audit verify after the disk was full: %v %+v", err, rep.Problems())
	}
	t.Logf("real tmpfs: %v", real)
}

// TestFaultDiskFullErrors (issue 24.3): on a real full disk (a 4 MiB
// tmpfs), every failed Put, of a known or an unknown size, says so:
// errors.Is(err, vault.ErrStoreFull) (which also matches
// ErrStoreUnavailable); and a Grant, refused because its record cannot be
// written, says both ErrAuditUnavailable and ErrStoreFull. Before: about
// one Put in five answered "context canceled" (the payload write cancelled
// by the index write that hit ENOSPC first was reported), and no error
// could be matched as a full disk.
func TestFaultDiskFullErrors(t *testing.T) {
	disk := t.TempDir()
	requireTmpfs(t, disk, "4m")
	c := newClock()
	fst, err := fsstore.OpenWithOptions(filepath.Join(disk, "store"), fsstore.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	storeClocks.Store(store.Store(fst), c)
	v, _ := openVault(t, fst, kektest.New(t), nil)
	info := put(t, v, 0)
	fill(t, filepath.Join(disk, "filler"))
	defer os.Remove(filepath.Join(disk, "filler"))
	failed := 0
	for i := range 40 {
		img := jpeg(4<<10 + i*(16<<10))
		n := int64(len(img))
		if i%2 == 1 {
			n = -1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: n, Subject: "member-2"})
		cancel()
		if err == nil {
			continue
		}
		failed++
		if !errors.Is(err, vault.ErrStoreFull) || !errors.Is(err, vault.ErrStoreUnavailable) {
			t.Errorf("Put %d of %d bytes on a full disk: %v; want ErrStoreFull", i, len(img), err)
		}
	}
	if failed < 30 {
		t.Fatalf("only %d of 40 Puts failed on the full disk", failed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = v.Grant(ctx, info.ID, review)
	if !errors.Is(err, vault.ErrAuditUnavailable) || !errors.Is(err, vault.ErrStoreFull) {
		t.Fatalf("Grant on a full disk: %v; want ErrAuditUnavailable and ErrStoreFull", err)
	}
}

// fill writes path until the disk is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
