package localkms_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/proctest"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/kms/awskms/localkms"
)

// TestListensOnLoopbackOnly: the server the tests start accepts
// connections on 127.0.0.1 and nowhere else: every listening socket on its
// port, IPv4 or IPv6, is bound to the loopback address (read from the
// kernel's socket tables). The upstream local-kms command, bound to
// ":PORT", fails this.
func TestListensOnLoopbackOnly(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		proctest.SkipUnlessCI(t, "needs Linux's /proc/net/tcp")
	}
	s := localkms.Start(t)
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", port)
	found := 0
	for _, table := range []struct{ path, loopback string }{
		{"/proc/net/tcp", "0100007F"},
		{"/proc/net/tcp6", "00000000000000000000000001000000"},
	} {
		f, err := os.Open(table.path)
		if err != nil {
			continue // no IPv6 here
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; 0A is LISTEN
			if len(fs) < 4 || fs[3] != "0A" || !strings.HasSuffix(fs[1], want) {
				continue
			}
			found++
			if addr := strings.TrimSuffix(fs[1], want); addr != table.loopback {
				t.Errorf("local-kms listens on %s (%s), not on loopback only", fs[1], table.path)
			}
		}
		f.Close()
	}
	if found == 0 {
		t.Fatalf("no listening socket on port %d found in /proc/net/tcp{,6}", port)
	}
}

// TestPauseKillRestart: a paused server answers nothing until Resume; a
// killed one refuses connections; Restart brings it back on its port with
// its keys.
func TestPauseKillRestart(t *testing.T) {
	s := localkms.Start(t)
	ctx := context.Background()
	kek, _ := s.NewKEK(t)
	ct, err := kek.Encrypt(ctx, []byte("data key"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	call := func() error {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := kek.Decrypt(ctx, ct, []byte("ad"))
		return err
	}
	// In order; after Restart the key must have survived.
	for _, step := range []struct {
		name string
		do   func() error
		up   bool // Decrypt answers after the step
	}{
		{"Pause", s.Pause, false},
		{"Resume", s.Resume, true},
		{"Kill", s.Kill, false},
		{"Restart", s.Restart, true},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		err := call()
		if step.up && err != nil {
			t.Fatalf("Decrypt after %s: %v", step.name, err)
		}
		if !step.up && !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("Decrypt after %s: %v; want kms.ErrUnavailable", step.name, err)
		}
	}
}
