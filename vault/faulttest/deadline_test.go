package faulttest_test

import (
	"fmt"
	"testing"

	"github.com/idvault/idvault/internal/deadlinetest"
	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

// storeFaultErrors: a call a store fault struck says the store, or the
// audit log it holds, is unavailable.
var storeFaultErrors = []error{vault.ErrStoreUnavailable, vault.ErrAuditUnavailable}

// TestFaultDeadlinesEveryStep (issue 24.1): every public call, with a 2 s
// deadline, while the store stops answering (hang) or refuses (refuse) at
// each of the call's store calls in turn (its own, and the audit batch
// writes made for it), on the filesystem store behind an in-process gate.
// Every call returns by its deadline plus vault.DeadlineMargin with an
// error matching ErrStoreUnavailable or ErrAuditUnavailable. Before: Decide
// and EraseSubject never returned once their receipt write failed (the
// claim was deleted under context.WithoutCancel, on the hung store), and
// Rewrap returned after the audit log's 10 s write timeout (its failure
// record was written under context.WithoutCancel).
func TestFaultDeadlinesEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("a few hundred 2 s calls, at once")
	}
	env := deadlinetest.FSEnv(kektest.New(t), kektest.New(t))
	for _, ft := range []deadlinetest.Fault{
		{Name: "hang", Strike: (*deadlinetest.Gate).Hang, Heal: heal, Want: storeFaultErrors, Parallel: true},
		{Name: "refuse", Strike: (*deadlinetest.Gate).Refuse, Heal: heal, Want: storeFaultErrors, Parallel: true},
	} {
		t.Run(ft.Name, func(t *testing.T) { deadlinetest.Run(t, env, ft) })
	}
}

func heal(_ testing.TB, g *deadlinetest.Gate) { g.Heal() }

// TestFaultDeadlinesMinIO (issue 24.1): the same calls on a real MinIO
// server. SIGSTOP: each call on its own, the server stopped at its first
// store call, at each audit batch write made for it, and at the store
// call right after its first one (where a call has changed something and
// has more to record). SIGKILL: every call at once, the server killed
// before they start (one restart; TestFaultDeadlinesEveryStep refuses
// each call's store calls in turn). Every
// call returns by its 2 s deadline plus vault.DeadlineMargin, with an
// error matching ErrStoreUnavailable or ErrAuditUnavailable. Before: on a
// stopped server Rewrap returned after 12 s, and Decide and EraseSubject
// never returned when stopped at their receipt; every error was untyped
// ("context deadline exceeded", "connection refused").
func TestFaultDeadlinesMinIO(t *testing.T) {
	// Three servers take a third of the calls each, at once: a call
	// stopped at its deadline costs 2 s of waiting, not of work.
	names := deadlinetest.Calls()
	for i := range 3 {
		t.Run(fmt.Sprintf("sigstop-%d", i+1), func(t *testing.T) {
			t.Parallel()
			srv := privateMinIO(t)
			ft := deadlinetest.ProcessFault("sigstop", srv.Pause, srv.Resume)
			ft.Want, ft.Points = storeFaultErrors, deadlinetest.AuditWrites
			deadlinetest.RunCalls(t, minioEnv(t, srv), ft, names[i*len(names)/3:(i+1)*len(names)/3]...)
		})
	}
	t.Run("sigkill", func(t *testing.T) {
		t.Parallel()
		srv := privateMinIO(t)
		ft := deadlinetest.ProcessFault("sigkill", srv.Kill, srv.Restart)
		ft.Want = storeFaultErrors
		deadlinetest.RunTogether(t, minioEnv(t, srv), ft, 0)
	})
}

func minioEnv(t *testing.T, srv *miniotest.Srv) deadlinetest.Env {
	return deadlinetest.Env{
		Store:    func(t testing.TB) store.Store { return s3On(t, srv) },
		ClockOf:  func(st store.Store) deadlinetest.Clock { return clockOf(st) },
		KEK:      kektest.New(t),
		OtherKEK: kektest.New(t),
	}
}
