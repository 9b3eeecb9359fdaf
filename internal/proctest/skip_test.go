package proctest

import (
	"runtime"
	"strings"
	"testing"
)

// outcomeTB records whether Skip or Fatal ended a test (without ending
// this one).
type outcomeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (o *outcomeTB) Helper() {}

func (o *outcomeTB) Skip(args ...any) {
	o.skipped, o.msg = true, args[0].(string)
	runtime.Goexit()
}

func (o *outcomeTB) Fatal(args ...any) {
	o.failed, o.msg = true, args[0].(string)
	runtime.Goexit()
}

// TestSkipUnlessCI: without a server a test skips on a developer's machine
// and fails under CI=true, where a skip would hide it.
func TestSkipUnlessCI(t *testing.T) {
	for _, tc := range []struct {
		ci                    string
		wantSkipped, wantFail bool
	}{
		{ci: "true", wantFail: true},
		{ci: "", wantSkipped: true},
		{ci: "1", wantSkipped: true},
	} {
		t.Setenv("CI", tc.ci)
		o := &outcomeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			SkipUnlessCI(o, "no frobnicator")
		}()
		<-done
		if o.skipped != tc.wantSkipped || o.failed != tc.wantFail {
			t.Errorf("CI=%q: skipped %v, failed %v; want %v, %v", tc.ci, o.skipped, o.failed, tc.wantSkipped, tc.wantFail)
		}
		if !strings.HasPrefix(o.msg, "no frobnicator") {
			t.Errorf("CI=%q: message %q does not say what is missing", tc.ci, o.msg)
		}
	}
}
