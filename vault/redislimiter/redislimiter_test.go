package redislimiter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idvault/idvault/internal/kektest"
	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/detect"
	"github.com/idvault/idvault/vault/detect/countertest"
)

var redisAddr string

// TestMain starts Debian's redis-server on 127.0.0.1 on a free port for
// the package's tests. Without it the tests skip, except under CI=true,
// where they fail.
func TestMain(m *testing.M) {
	stop, addr, err := startRedis()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "redislimiter: redis-server is required under CI=true:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "redislimiter: skipping, no redis-server:", err)
	}
	redisAddr = addr
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

func startRedis() (func(), string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "redislimiter")
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := rdb.Ping(context.Background()).Err(); err == nil {
			return stop, addr, nil
		} else if time.Now().After(deadline) {
			stop()
			return nil, "", fmt.Errorf("redis-server did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func client(t *testing.T) *redis.Client {
	if redisAddr == "" {
		t.Skip("no redis-server")
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestConformance(t *testing.T) {
	countertest.Run(t, func(t *testing.T) (detect.Counter, detect.Counter) {
		prefix := fmt.Sprintf("t%d:", time.Now().UnixNano())
		return New(client(t), prefix), New(client(t), prefix)
	})
}

// Slots expire at slot+keep: Redis memory does not grow with time.
func TestExpiry(t *testing.T) {
	rdb := client(t)
	l := New(rdb, "exp:")
	slot := time.Now().Add(-time.Hour)
	if _, err := l.Add(context.Background(), "p/x/v1m", slot, time.Hour+2*time.Second); err != nil {
		t.Fatal(err)
	}
	ttl := rdb.PTTL(context.Background(), l.key("p/x/v1m", slot)).Val()
	if ttl <= 0 || ttl > 3*time.Second {
		t.Fatalf("TTL %v, want about 2 s", ttl)
	}
}

// TestBurstFreeze: 100 parallel grant+redeem by one principal on a vault
// whose counts are in Redis, with FreezeOnAlert: no more documents than
// the burst threshold, one bulk-access alert.
func TestBurstFreeze(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	var mu sync.Mutex
	var alerts []vault.AlertKind
	v, err := vault.Open(ctx, vault.Config{Store: memstore.New(), KEK: kektest.New(t), FreezeOnAlert: true,
		Limiter: New(rdb, fmt.Sprintf("burst%d:", time.Now().UnixNano())),
		OnAlert: func(a vault.Alert) { mu.Lock(); alerts = append(alerts, a.Kind); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	var ids []string
	for i := range 100 {
		img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 100+i)...)
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: "m"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	var served atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			g, err := v.Grant(ctx, id, vault.Access{Principal: "thief", Purpose: "p"})
			if err != nil {
				return
			}
			rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "thief"})
			if err != nil {
				return
			}
			io.Copy(io.Discard, rc)
			rc.Close()
			served.Add(1)
		})
	}
	wg.Wait()
	bulk := 0
	for _, k := range alerts {
		if k == vault.AlertBulk {
			bulk++
		}
	}
	t.Logf("served %d of 100; alerts %v", served.Load(), alerts)
	if served.Load() > vault.DefaultBurst || bulk != 1 {
		t.Fatalf("served %d (threshold %d), %d bulk alerts (want 1)", served.Load(), vault.DefaultBurst, bulk)
	}
}
