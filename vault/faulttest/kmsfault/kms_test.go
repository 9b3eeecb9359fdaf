package kmsfault_test

import (
	"context"
	"testing"

	"github.com/idvault/idvault/internal/deadlinetest"
	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
	"github.com/idvault/idvault/vault"
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
	env := deadlinetest.FSEnv(kek, kektest.New(t))
	for _, ft := range []deadlinetest.Fault{
		deadlinetest.ProcessFault("sigstop", srv.Pause, srv.Resume),
		deadlinetest.ProcessFault("sigkill", srv.Kill, srv.Restart),
	} {
		ft.Target, ft.Want, ft.Reason, ft.Points = deadlinetest.KEK, []error{vault.ErrKEKUnavailable}, "kek-unavailable", deadlinetest.Every
		t.Run(ft.Name, func(t *testing.T) { deadlinetest.Run(t, env, ft) })
	}
}
