package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// errNoRedis: redis-server is not installed; outside CI the redislimiter
// contenders are skipped (with a line saying so), under CI=true the run
// fails.
var errNoRedis = errors.New("redis-server not found on PATH (apt-get install redis-server, or make redis)")

// startRedis starts Debian's redis-server on 127.0.0.1 on a free port,
// without persistence, and returns a client and how to stop both.
func startRedis(ctx context.Context) (*redis.Client, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, nil, errNoRedis
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "idvbench-redis-")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), PoolSize: 64})
	stop := func() {
		rdb.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return rdb, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, nil, fmt.Errorf("redis-server did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
