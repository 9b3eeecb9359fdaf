package miniotest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/proctest"
	"github.com/minio/minio-go/v7"
)

// startOwn starts a server of the test's own with Start (stopped when the
// test ends) and returns it with a client holding its root credentials.
func startOwn(t *testing.T) (*Srv, *minio.Client) {
	t.Helper()
	if findBinary() == "" {
		proctest.SkipUnlessCI(t, "no minio binary")
	}
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c, err := newClient(s.Endpoint(), s.AccessKey(), s.SecretKey())
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// TestStartStop: Start runs a server of its own, not the shared one, that
// answers with its credentials; Stop ends it and removes its data.
func TestStartStop(t *testing.T) {
	s, c := startOwn(t)
	if shared != nil && s.Endpoint() == shared.Endpoint() {
		t.Fatal("Start returned the shared server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, "idv-start-stop", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	s.Stop()
	select {
	case <-s.proc.Done():
	default:
		t.Error("server process still running after Stop")
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory left behind: %v", err)
	}
	s.Stop() // idempotent
}

func TestStartNoBinary(t *testing.T) {
	t.Setenv("MINIO_BIN", "/nonexistent/minio")
	_, err := Start()
	if !errors.Is(err, ErrNoBinary) {
		t.Fatalf("Start with no binary: %v, want ErrNoBinary", err)
	}
}

// TestKillRestart: a server killed with Kill refuses connections, and
// Restart brings it back on the same address with its data, for the same
// client.
func TestKillRestart(t *testing.T) {
	s, c := startOwn(t)
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, "idv-kill-restart", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithTimeout(ctx, time.Second)
	_, err := c.BucketExists(kctx, "idv-kill-restart")
	kcancel()
	if err == nil {
		t.Fatal("a killed server answered")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.BucketExists(ctx, "idv-kill-restart"); err != nil || !ok {
		t.Fatalf("after Restart: BucketExists = %v, %v; want the bucket made before the kill", ok, err)
	}
}

// TestPauseResume: once Pause returns, the server answers nothing (every
// thread is stopped, however loaded the machine); once Resume returns it
// answers again.
func TestPauseResume(t *testing.T) {
	s, c := startOwn(t)
	for i := range 10 {
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := c.ListBuckets(ctx)
		cancel()
		if err == nil {
			t.Fatalf("round %d: a paused server answered", i)
		}
		if err := s.Resume(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.ListBuckets(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: after Resume: %v", i, err)
		}
	}
}
