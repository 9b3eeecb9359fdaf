package faulttest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

// TestFaultPutAuditExact (issue 13.1): the payload upload fails after the
// audit log has had time to write, and from then on the audit log fails
// too. Before the fix Put had already written "put ok" alongside the upload
// and could not write the refusal that superseded it: a "put ok" record
// for a document that never existed. Now "put ok" is written only after
// the commit.
func TestFaultPutAuditExact(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fs := &faultStore{Store: b.new(t)}
			v, _ := openVault(t, fs, kektest.New(t), nil)
			audited := make(chan struct{}, 64)
			var (
				mu        sync.Mutex
				auditDown bool
			)
			fs.set(func(ctx context.Context, key string) error {
				switch {
				case strings.HasPrefix(key, "blobs/"):
					// Give an early audit write every chance to land.
					select {
					case <-audited:
					case <-time.After(500 * time.Millisecond):
					}
					mu.Lock()
					auditDown = true
					mu.Unlock()
					return errInjected
				case strings.HasPrefix(key, "audit/"):
					mu.Lock()
					defer mu.Unlock()
					if auditDown {
						return errInjected
					}
				}
				return nil
			}, func(key string, err error) {
				if strings.HasPrefix(key, "audit/") && err == nil {
					select {
					case audited <- struct{}{}:
					default:
					}
				}
			}, nil)
			b := jpeg(64 << 10)
			_, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(b), Size: int64(len(b)), Subject: "member-1"})
			if err == nil {
				t.Fatal("Put succeeded with its payload write failing")
			}
			fs.set(nil, nil, nil)
			checkPutTrail(t, fs.Store)
		})
	}
}

// TestFaultFailedPutCollected (issue 17.5): a Put whose key record write
// fails, on a store that also refuses the cleanup's deletes, leaves its
// index entries and payload behind; Sweep removes all of it by the
// document's deadline. Before: the subject index entry stayed forever.
func TestFaultFailedPutCollected(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fs := &faultStore{Store: b.new(t)}
			kek := kektest.New(t)
			v, clk := openVault(t, fs, kek, nil)
			// The key record and the subject entry are written at once:
			// fail the key record only once the subject entry landed, so
			// that there is one to collect.
			subjectDone, landed := subjectLanded()
			fs.set(func(ctx context.Context, key string) error {
				if !strings.HasPrefix(key, "keys/") {
					return nil
				}
				select {
				case <-subjectDone:
				case <-ctx.Done():
				}
				return errInjected
			}, landed, func(context.Context, string) error { return errInjected })
			img := jpeg(64 << 10)
			if _, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "member-1"}); err == nil {
				t.Fatal("Put succeeded with its key record write failing")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v.Close(ctx) // waits for the background cleanup, which fails
			cancel()
			fs.set(nil, nil, nil)
			if len(keys(t, fs, "index/subject/")) == 0 {
				t.Fatal("precondition: the failed Put left no subject index entry")
			}
			sweptPastDeadline(t, fs, kek, clk, "index/", "blobs/", "keys/")
		})
	}
}

// slowBody yields n bytes of a JPEG and calls at(k) once k bytes were read.
type slowBody struct {
	r    io.Reader
	n    int64
	at   int64
	fire func()
	once sync.Once
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.n >= s.at {
		s.once.Do(s.fire)
	}
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	m, err := s.r.Read(p)
	s.n += int64(m)
	return m, err
}

// putLimit is how late a Put with a deadline may return: the deadline, the
// documented AuditMargin, and slack for a loaded 2-core machine under
// -race.
const putDeadline = time.Second

var putLimit = putDeadline + vault.AuditMargin + time.Second

// TestFaultStorageKilled (issue 17.4 and 17.6): MinIO SIGKILLed or
// SIGSTOPped in the middle of a Put, and SIGSTOPped in the middle of a
// Redeem. Put returns within its 1 s deadline plus AuditMargin (plus
// slack for the machine), with a size known and unknown; before the fix it
// returned after about 10 s (the detached cleanup) and 40 s (plus the
// multipart abort). Redeem returns by its deadline with nothing served.
func TestFaultStorageKilled(t *testing.T) {
	t.Run("sigstop", func(t *testing.T) {
		srv := privateMinIO(t)
		st := s3On(t, srv)
		v, _ := openVault(t, st, kektest.New(t), nil)
		info := put(t, v, 0)
		g := grant(t, v, info.ID)
		img := jpeg(8 << 20)
		body := &slowBody{r: bytes.NewReader(img), at: 1 << 20, fire: func() { srv.Pause() }}
		err := within(t, "Put with MinIO stopped", func(ctx context.Context) error {
			_, err := v.Put(ctx, vault.Document{Body: body, Size: int64(len(img)), Subject: "member-2"})
			return err
		})
		if err == nil {
			t.Fatal("Put succeeded with MinIO stopped")
		}
		err = within(t, "Redeem with MinIO stopped", func(ctx context.Context) error {
			rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-1"})
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
				if err == nil {
					return errors.New("served")
				}
			}
			return err
		})
		if err == nil || err.Error() == "served" {
			t.Fatalf("Redeem with MinIO stopped: %v", err)
		}
		srv.Resume()
		checkPutTrail(t, st)
	})
	t.Run("fs-hung", func(t *testing.T) {
		// The filesystem store hangs on the key record's write and on
		// every delete (as a hung NFS mount would, until the context
		// ends). Before the fix Put waited 10 s for its cleanup.
		fs := &faultStore{Store: fsBackend(t)}
		v, _ := openVault(t, fs, kektest.New(t), nil)
		release := make(chan struct{})
		defer close(release)
		fs.set(hangPrefix("keys/", release), nil, hangPrefix("", release))
		img := jpeg(1 << 20)
		body := bytes.NewReader(img)
		err := within(t, "Put with the filesystem hung", func(ctx context.Context) error {
			_, err := v.Put(ctx, vault.Document{Body: body, Size: int64(len(img)), Subject: "member-2"})
			return err
		})
		if err == nil {
			t.Fatal("Put succeeded with the store hung")
		}
	})
	for _, size := range []string{"known", "unknown"} {
		t.Run("sigkill/size-"+size, func(t *testing.T) {
			srv := privateMinIO(t)
			st := s3On(t, srv)
			v, _ := openVault(t, st, kektest.New(t), nil)
			info := put(t, v, 0)
			g := grant(t, v, info.ID)
			img := jpeg(12 << 20) // over one 5 MiB part: multipart when the size is unknown
			body := &slowBody{r: bytes.NewReader(img), at: 6 << 20, fire: func() { srv.Kill() }}
			n := int64(len(img))
			if size == "unknown" {
				n = -1
			}
			err := within(t, "Put with MinIO killed", func(ctx context.Context) error {
				_, err := v.Put(ctx, vault.Document{Body: body, Size: n, Subject: "member-3"})
				return err
			})
			if err == nil {
				t.Fatal("Put succeeded with MinIO killed")
			}
			err = within(t, "Redeem with MinIO killed", func(ctx context.Context) error {
				rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-1"})
				if err == nil {
					rc.Close()
				}
				return err
			})
			if err == nil {
				t.Fatal("Redeem succeeded with MinIO killed")
			}
		})
	}
}

// TestFaultFailedPutLeavesNothingSweepCannotFind (issue 24.4): the store
// dies (every later write and delete fails, as on a killed server) at each
// write of a Put in turn, for both a known and an unknown size; and, in a
// second series, only the writes under one prefix fail, with the cleanup's
// deletes failing too. Once the store is back, a later instance past the
// document's deadline and the orphan grace period sweeps; nothing the
// failed Put wrote may remain. Before: the two index markers were written
// at once, so the subject marker could land while the expiry marker, the
// only thing that leads Sweep to it, did not (index/expiry/ failing while
// index/subject/ lands); that subject entry was never removed.
func TestFaultFailedPutLeavesNothingSweepCannotFind(t *testing.T) {
	type run struct {
		name string
		fail func(fs *faultStore)
	}
	var runs []run
	for k := 1; k <= 6; k++ {
		runs = append(runs, run{fmt.Sprintf("store-dies-at-write-%d", k), func(fs *faultStore) {
			var n atomic.Int32
			dead := func(context.Context, string) error {
				if n.Add(1) >= int32(k) {
					return errInjected
				}
				return nil
			}
			fs.set(dead, nil, func(context.Context, string) error {
				if n.Load() >= int32(k) {
					return errInjected
				}
				return nil
			})
		}})
	}
	for _, prefix := range []string{"index/expiry/", "index/subject/", "blobs/", "keys/", "audit/"} {
		runs = append(runs, run{"fails-" + strings.TrimSuffix(prefix, "/"), func(fs *faultStore) {
			subjectDone, landed := subjectLanded()
			fs.set(func(ctx context.Context, key string) error {
				if !strings.HasPrefix(key, prefix) {
					return nil
				}
				if prefix == "index/expiry/" {
					// Fail only once the subject entry landed, if it is
					// written at all before this one is answered.
					select {
					case <-subjectDone:
					case <-time.After(time.Second):
					case <-ctx.Done():
					}
				}
				return errInjected
			}, landed, func(context.Context, string) error { return errInjected })
		}})
	}
	for _, r := range runs {
		for _, size := range []string{"known", "unknown"} {
			t.Run(r.name+"/size-"+size, func(t *testing.T) {
				fs := &faultStore{Store: fsBackend(t)}
				kek := kektest.New(t)
				v, clk := openVault(t, fs, kek, nil)
				r.fail(fs)
				img := jpeg(64 << 10)
				n := int64(len(img))
				if size == "unknown" {
					n = -1
				}
				_, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: n, Subject: "member-1"})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				v.Close(ctx) // waits for the background cleanup, which may fail
				cancel()
				fs.set(nil, nil, nil)
				if err == nil {
					return // the failure came too late to matter: a stored document
				}
				sweptPastDeadline(t, fs, kek, clk, "index/", "blobs/", "keys/", "orphans/", "claims/")
			})
		}
	}
}

// sweptPastDeadline opens a later instance past a failed Put's deadline
// (72 h) and the orphan grace period, sweeps (orphans are marked, then
// collected a grace period later) and fails t for any entry left under
// prefixes: everything the failed Put wrote is gone.
func sweptPastDeadline(t *testing.T, st store.Store, kek kms.KEK, clk *clock, prefixes ...string) {
	t.Helper()
	clk.Advance(73 * time.Hour)
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(context.Background())
	for range 2 {
		if _, err := v.Admin().Sweep(context.Background(), operator); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Hour)
	}
	for _, p := range prefixes {
		if left := keys(t, st, p); len(left) != 0 {
			t.Errorf("%d entries under %s outlived the failed Put and its deadline", len(left), p)
		}
	}
}

// subjectLanded returns a channel closed once a Put of a subject index
// entry has succeeded, and the faultStore afterPut hook that closes it.
func subjectLanded() (<-chan struct{}, func(key string, err error)) {
	done := make(chan struct{})
	var once sync.Once
	return done, func(key string, err error) {
		if strings.HasPrefix(key, "index/subject/") && err == nil {
			once.Do(func() { close(done) })
		}
	}
}
