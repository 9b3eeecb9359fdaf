package proctest

import (
	"errors"
	"os/exec"
	"testing"
)

// TestProcSignals: Pause, Resume and Kill reach the process, Kill waits
// for it, and a process that has exited is reported as not running.
func TestProcSignals(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		SkipUnlessCI(t, "no sh on PATH")
	}
	out := NewTail(1 << 10)
	p, err := Start(exec.Command(sh, "-c", "echo up"), out)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if got := out.Lines(1); got != "up" || !p.ExitState().Success() {
		t.Fatalf("output %q, exit %v; want %q, success", got, p.ExitState(), "up")
	}

	p, err = Start(exec.Command(sh, "-c", "exec sleep 60"), out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	if err := p.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if stopped, err := threadsStopped(p.cmd.Process.Pid, true); err != nil || !stopped {
		t.Fatalf("after Pause: stopped %v, %v", stopped, err)
	}
	if err := p.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if running, err := threadsStopped(p.cmd.Process.Pid, false); err != nil || !running {
		t.Fatalf("after Resume: running %v, %v", running, err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Kill returned before the process exited")
	}
	if st := p.ExitState(); st == nil || st.Success() {
		t.Fatalf("exit state %v, want killed", st)
	}
	for name, op := range map[string]func() error{"Kill": p.Kill, "Pause": p.Pause, "Resume": p.Resume} {
		if err := op(); !errors.Is(err, ErrNotRunning) {
			t.Errorf("%s after exit: %v, want ErrNotRunning", name, err)
		}
	}
	p.Stop(0) // no-op after exit
}
