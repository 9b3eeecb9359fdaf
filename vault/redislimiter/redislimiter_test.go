package redislimiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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
	srv, err := newRedis(0)
	if err != nil {
		return nil, "", err
	}
	return srv.stop, srv.addr, nil
}

// redisServer is one redis-server on 127.0.0.1, without persistence.
type redisServer struct {
	cmd  *exec.Cmd
	port int
	addr string
	dir  string
}

// newRedis starts redis-server on port (0: a free one) and waits until it
// answers.
func newRedis(port int) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	dir, err := os.MkdirTemp("", "redislimiter")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &redisServer{cmd: cmd, port: port, addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := rdb.Ping(context.Background()).Err(); err == nil {
			return s, nil
		} else if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond) // waiting for a server to start, not for correctness
	}
}

func (s *redisServer) stop() {
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// ownRedis starts a redis-server for one test (which may stop, kill or
// restart it) and stops it at the end.
func ownRedis(t *testing.T) *redisServer {
	t.Helper()
	s, err := newRedis(0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip("no redis-server: ", err)
	}
	t.Cleanup(func() { s.stop() })
	return s
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
		return New(client(t), prefix, Options{}), New(client(t), prefix, Options{})
	})
}

// Slots expire at slot+keep: Redis memory does not grow with time.
func TestExpiry(t *testing.T) {
	rdb := client(t)
	l := New(rdb, "exp:", Options{})
	if err := l.Restore(context.Background(), func(context.Context) ([]detect.SlotCount, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
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
// whose counts are in Redis, with the default freeze: no more documents
// than the burst threshold, one bulk-access alert.
func TestBurstFreeze(t *testing.T) {
	rdb := client(t)
	ctx := context.Background()
	var mu sync.Mutex
	var alerts []vault.AlertKind
	v, err := vault.Open(ctx, vault.Config{
		Store: memstore.New(),
		KEK:   kektest.New(t),
		Detection: vault.DetectionConfig{
			Limiter: New(rdb, fmt.Sprintf("burst%d:", time.Now().UnixNano()), Options{}),
			OnAlert: func(a vault.Alert) { mu.Lock(); alerts = append(alerts, a.Kind); mu.Unlock() },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	ids := putDocs(t, v, 100)
	var served atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if view(ctx, v, id, "thief") == nil {
				served.Add(1)
			}
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

// putDocs stores n documents.
func putDocs(t *testing.T, v *vault.Vault, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		img := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 100+i)...)
		info, err := v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	return ids
}

// view grants principal a token for document id and redeems it, reading
// the image through; an error means Grant or Redeem refused.
func view(ctx context.Context, v *vault.Vault, id, principal string) error {
	g, err := v.Grant(ctx, id, vault.Access{Principal: principal, Purpose: "p"})
	if err != nil {
		return err
	}
	rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: principal})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	return nil
}

// TestCountsSurviveLoss: an attacker who used 20 of 20 grants an hour
// gets no fresh 20 when Redis forgets the counts, by FLUSHALL or by a
// restart without persistence: the vault rebuilds them from its audit log
// (on every instance: a second vault on the same store and Redis counts
// on) before it counts again. Before, the 21st grant after a FLUSHALL was
// granted.
func TestCountsSurviveLoss(t *testing.T) {
	for _, how := range []string{"flushall", "restart"} {
		t.Run(how, func(t *testing.T) {
			srv := ownRedis(t)
			ctx := context.Background()
			newClient := func() *redis.Client {
				rdb := redis.NewClient(&redis.Options{Addr: srv.addr})
				t.Cleanup(func() { rdb.Close() })
				return rdb
			}
			st := memstore.New()
			kek := kektest.New(t)
			open := func() *vault.Vault {
				v, err := vault.Open(ctx, vault.Config{
					Store: st,
					KEK:   kek,
					Detection: vault.DetectionConfig{
						Limiter:           New(newClient(), "idv:", Options{}),
						AllowLocalLimiter: true,
						AlertOnly:         true,
						Quota:             vault.Quota{Documents: 20, Burst: 100},
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { v.Close(ctx) })
				return v
			}
			a, b := open(), open()
			ids := putDocs(t, a, 30)
			for i := range 20 {
				if _, err := []*vault.Vault{a, b}[i%2].Grant(ctx, ids[i], vault.Access{Principal: "thief", Purpose: "p"}); err != nil {
					t.Fatalf("grant %d: %v", i, err)
				}
			}
			switch how {
			case "flushall":
				if err := newClient().FlushAll(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			case "restart":
				srv.cmd.Process.Kill()
				srv.cmd.Wait()
				fresh, err := newRedis(srv.port)
				if err != nil {
					t.Fatal(err)
				}
				*srv = *fresh
			}
			for i, v := range []*vault.Vault{a, b} {
				_, err := v.Grant(ctx, ids[20+i], vault.Access{Principal: "thief", Purpose: "p"})
				if !errors.Is(err, vault.ErrQuotaExceeded) {
					t.Fatalf("instance %d, grant 21 after the counts were lost: %v, want ErrQuotaExceeded", i, err)
				}
			}
			// Another principal is not affected, and the rebuilt counts are in Redis.
			if _, err := b.Grant(ctx, ids[25], vault.Access{Principal: "reviewer", Purpose: "p"}); err != nil {
				t.Fatalf("another principal after the rebuild: %v", err)
			}
			if n, err := newClient().Exists(ctx, "idv:epoch").Result(); err != nil || n != 1 {
				t.Fatalf("epoch marker after the rebuild: %d, %v", n, err)
			}
		})
	}
}

// TestDeadlineBoundsCalls: with a Redis that stopped answering (SIGSTOP)
// and a client built as the package doc shows, every call returns by the
// caller's deadline (or by Options.Timeout without one), with an error,
// and so does a Grant, refused (fail closed). Before, Grant waited 5 s
// against a 2 s deadline and 40 s without one.
func TestDeadlineBoundsCalls(t *testing.T) {
	srv := ownRedis(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.addr})
	t.Cleanup(func() { rdb.Close() })
	l := New(rdb, "dl:", Options{Timeout: time.Second})
	v, err := vault.Open(ctx, vault.Config{Store: memstore.New(), KEK: kektest.New(t), Detection: vault.DetectionConfig{Limiter: l, AllowLocalLimiter: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	ids := putDocs(t, v, 3)
	if _, err := v.Grant(ctx, ids[0], vault.Access{Principal: "r", Purpose: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.cmd.Process.Signal(syscall.SIGCONT) })
	const margin = 250 * time.Millisecond
	slot := time.Now().Truncate(time.Minute)
	for _, c := range []struct {
		name     string
		deadline time.Duration // 0: none
		call     func(ctx context.Context) error
	}{
		{"Add, 2 s deadline", 2 * time.Second, func(ctx context.Context) error { _, err := l.Add(ctx, "p/x/v1m", slot, time.Hour); return err }},
		{"Get, 2 s deadline", 2 * time.Second, func(ctx context.Context) error { _, err := l.Get(ctx, "p/x/v1m", slot, time.Hour); return err }},
		{"Range, no deadline", 0, func(ctx context.Context) error {
			_, err := l.Range(ctx, "p/x/v1m", slot.Add(-time.Hour), slot, time.Minute, time.Hour)
			return err
		}},
		{"Grant, 2 s deadline", 2 * time.Second, func(ctx context.Context) error {
			_, err := v.Grant(ctx, ids[1], vault.Access{Principal: "r", Purpose: "p"})
			if err != nil && !errors.Is(err, vault.ErrQuotaExceeded) {
				return fmt.Errorf("not refused as over quota: %w", err)
			}
			return err
		}},
		{"Add, no deadline", 0, func(ctx context.Context) error { _, err := l.Add(ctx, "p/x/v1m", slot, time.Hour); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cctx, cancel := ctx, context.CancelFunc(func() {})
			bound := c.deadline
			if bound > 0 {
				cctx, cancel = context.WithTimeout(ctx, c.deadline)
			} else {
				bound = time.Second // Options.Timeout
			}
			defer cancel()
			start := time.Now()
			err := c.call(cctx)
			took := time.Since(start)
			t.Logf("%s: %v after %v", c.name, err, took.Round(time.Millisecond))
			if err == nil {
				t.Fatal("succeeded against a stopped Redis")
			}
			if took > bound+margin {
				t.Fatalf("returned after %v, bound %v + %v", took, bound, margin)
			}
		})
	}
	// Calls given up on are bounded too: past MaxAbandoned they fail at once.
	small := New(rdb, "dl:", Options{Timeout: 50 * time.Millisecond, MaxAbandoned: 2})
	for range 2 {
		small.Add(ctx, "p/y/v1m", slot, time.Hour)
	}
	start := time.Now()
	if _, err := small.Add(ctx, "p/y/v1m", slot, time.Hour); !errors.Is(err, ErrUnavailable) || time.Since(start) > 20*time.Millisecond {
		t.Fatalf("third call with two abandoned: %v after %v", err, time.Since(start))
	}
}

// TestVaultCallsBoundedRedisDown: the vault's calls that count (Grant,
// Decide) return by their deadline plus vault.DeadlineMargin, with an
// error matching ErrQuotaExceeded (they fail closed) and nothing served,
// when Redis is stopped (SIGSTOP) or killed (SIGKILL) between the grant
// and the calls; with the client options the package doc shows. Redeem
// counts nothing (its token was counted when granted: Quota.Redemptions),
// so a token granted before Redis went down is redeemed, within the same
// bound.
func TestVaultCallsBoundedRedisDown(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := ownRedis(t)
			ctx := context.Background()
			rdb := redis.NewClient(&redis.Options{Addr: srv.addr, ContextTimeoutEnabled: true})
			t.Cleanup(func() { rdb.Close() })
			v, err := vault.Open(ctx, vault.Config{
				Store: memstore.New(),
				KEK:   kektest.New(t),
				Detection: vault.DetectionConfig{
					Limiter:           New(rdb, "down:", Options{}),
					AllowLocalLimiter: true,
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { v.Close(ctx) })
			ids := putDocs(t, v, 3)
			// A view of ids[0] (so that a decision about it is bound to
			// one), and a token for ids[1] not yet redeemed.
			if err := view(ctx, v, ids[0], "r"); err != nil {
				t.Fatal(err)
			}
			g1, err := v.Grant(ctx, ids[1], vault.Access{Principal: "r", Purpose: "p"})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			const deadline = 2 * time.Second
			for _, c := range []struct {
				name string
				call func(ctx context.Context) error
			}{
				{"Grant", func(ctx context.Context) error {
					_, err := v.Grant(ctx, ids[2], vault.Access{Principal: "r", Purpose: "p"})
					return err
				}},
				{"Redeem", func(ctx context.Context) error {
					rc, _, err := v.Redeem(ctx, g1.Token, vault.Requester{Principal: "r"})
					if err == nil {
						rc.Close()
					}
					return err
				}},
				{"Decide", func(ctx context.Context) error {
					return v.Decide(ctx, ids[0], vault.Decision{Verdict: vault.Approved}, vault.Actor{Principal: "r"})
				}},
			} {
				cctx, cancel := context.WithTimeout(ctx, deadline)
				start := time.Now()
				err := c.call(cctx)
				took := time.Since(start)
				cancel()
				t.Logf("%s: %v after %v", c.name, err, took.Round(time.Millisecond))
				if c.name == "Redeem" {
					if err != nil {
						t.Errorf("Redeem of a token granted before Redis went down: %v (it needs no count)", err)
					}
				} else if !errors.Is(err, vault.ErrQuotaExceeded) {
					t.Errorf("%s with Redis down: %v, want ErrQuotaExceeded (fail closed)", c.name, err)
				}
				if took > deadline+vault.DeadlineMargin {
					t.Errorf("%s returned after %v, bound %v + %v", c.name, took, deadline, vault.DeadlineMargin)
				}
			}
			// Nothing was decided: the document is still there.
			if _, err := v.Grant(ctx, ids[0], vault.Access{Principal: "r", Purpose: "p"}); errors.Is(err, vault.ErrNotFound) {
				t.Fatal("a decision was carried out without its count")
			}
		})
	}
}
