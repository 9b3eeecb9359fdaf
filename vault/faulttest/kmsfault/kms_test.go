package kmsfault_test

import (
	"context"
	"testing"

	"github.com/idvault/idvault/internal/deadlinetest"
	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/store"
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
	env := deadlinetest.Env{
		Store: func(t testing.TB) store.Store {
			st, err := fsstore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
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
