package kmsfault_test

import (
	"context"
	"sync"
	"testing"

	"github.com/idvault/idvault/internal/deadlinetest"
	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/vaulttest"
)

// TestFaultDeadlinesLocalKMS (issue 24.1, 24.3): every public call of a
// vault whose KEK is an AWS KMS key (local-kms), with a 2 s deadline, while
// local-kms is SIGSTOPped (it keeps its connections and answers nothing)
// or SIGKILLed at each of the call's KEK calls in turn. Every call returns
// by its deadline plus vault.DeadlineMargin; a call that needed the KEK
// says ErrKEKUnavailable (Sweep reports it in its counts, and calls that
// need no KEK succeed); and the refusal of a Grant or Redeem is in the
// audit log as "kek-unavailable". Before: with the KMS hung until the
// deadline, that refusal record was never written (it was appended with
// the caller's context, already ended).
func TestFaultDeadlinesLocalKMS(t *testing.T) {
	srv := localkms.Start(t)
	ctx := context.Background()
	uri, err := srv.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := kms.Open(ctx, uri, kms.OpenOptions{Openers: []kms.Opener{srv.Opener()}})
	if err != nil {
		t.Fatal(err)
	}
	// Each store tells its time by the clock the vault is opened with
	// (the vault refuses to sweep or shred while the two disagree).
	var clocks sync.Map // store.Store → *vaulttest.Clock
	env := deadlinetest.Env{
		Store: func(t testing.TB) store.Store {
			c := vaulttest.NewClock()
			st, err := fsstore.OpenWithOptions(t.TempDir(), fsstore.Options{Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			clocks.Store(store.Store(st), c)
			return st
		},
		ClockOf: func(st store.Store) deadlinetest.Clock {
			if c, ok := clocks.Load(st); ok {
				return c.(*vaulttest.Clock)
			}
			return nil
		},
		KEK:      kek,
		OtherKEK: kektest.New(t),
	}
	want := []error{vault.ErrKEKUnavailable}
	for _, ft := range []deadlinetest.Fault{
		{Name: "sigstop", Target: deadlinetest.KEK, Want: want, Reason: "kek-unavailable", Points: deadlinetest.Every,
			Strike: func(*deadlinetest.Gate) { srv.Pause() },
			Heal: func(t testing.TB, _ *deadlinetest.Gate) {
				if err := srv.Resume(); err != nil {
					t.Fatal(err)
				}
			}},
		{Name: "sigkill", Target: deadlinetest.KEK, Want: want, Reason: "kek-unavailable", Points: deadlinetest.Every,
			Strike: func(*deadlinetest.Gate) { srv.Kill() },
			Heal: func(t testing.TB, _ *deadlinetest.Gate) {
				if err := srv.Restart(); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(ft.Name, func(t *testing.T) { deadlinetest.Run(t, env, ft) })
	}
}
