package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault"
)

// benchRedeem: idvault Grant+Redeem (token, ledger, audit, decryption, whole
// body read) against GetObject and an HTTP GET of a presigned URL, at
// concurrency 1 and 8.
func (e *env) benchRedeem(ctx context.Context) error {
	type sizeCase struct {
		size          int64
		iters, iters8 int // rounds at concurrency 1 and 8
	}
	cases := []sizeCase{
		{4 << 10, e.iters(200, 3), e.iters(40, 2)},
		{1 << 20, e.iters(100, 3), e.iters(25, 2)},
		{5 << 20, e.iters(50, 2), e.iters(12, 1)},
	}
	for i, c := range cases {
		data := imageBytes(c.size, 100+uint64(i))
		info, err := e.vault.Put(ctx, vault.Document{Body: bytes.NewReader(data), Size: c.size, Kind: "bench", Subject: benchSubject})
		if err != nil {
			return err
		}
		name := plainPrefix + randHex(16)
		if _, err := e.client.PutObject(ctx, e.bucket, name, bytes.NewReader(data), c.size, minio.PutObjectOptions{ContentType: vault.TypeJPEG}); err != nil {
			return err
		}
		if err := e.checkRetrieval(ctx, info.ID, name, data); err != nil {
			return err
		}
		for _, conc := range []int{1, 8} {
			iters := c.iters
			if conc > 1 {
				iters = c.iters8
			}
			cs := e.retrievalContenders(info.ID, name, c.size)
			cse := fmt.Sprintf("%s c=%d", sizeName(c.size), conc)
			e.setPhase("redeem " + cse)
			err := interleave(ctx, e.warmup(), iters, conc, cs)
			e.setPhase("")
			if err != nil {
				return err
			}
			for _, ct := range cs {
				e.add(ct.measurement("redeem", cse, c.size, conc))
				if m, ok := ct.partMeasurement("redeem", cse, "idvault Redeem alone", c.size, conc); ok {
					e.add(m)
				}
			}
			var t *target
			switch c.size {
			case 1 << 20:
				t = atMost(2.0)
			case 5 << 20:
				t = atMost(1.3)
			}
			e.res.compare("redeem "+cse+" p50: Grant+Redeem / GetObject", "redeem", cse, "idvault Grant+Redeem", "GetObject", "p50_ms", t)
			e.res.compare("redeem "+cse+" p50: Redeem alone / GetObject", "redeem", cse, "idvault Redeem alone", "GetObject", "p50_ms", t)
			e.res.compare("redeem "+cse+" p50: Grant+Redeem / presigned GET", "redeem", cse, "idvault Grant+Redeem", "presigned GET", "p50_ms", nil)
		}
	}
	return nil
}

func (e *env) retrievalContenders(id, name string, size int64) []*contender {
	check := func(n int64, err error) error {
		if err == nil && n != size {
			err = fmt.Errorf("read %d bytes, want %d", n, size)
		}
		return err
	}
	return []*contender{
		{name: "idvault Grant+Redeem", op: func(ctx context.Context) (time.Duration, error) {
			e.trace.vaultOp()
			g, err := e.vault.Grant(ctx, id, vault.Access{Principal: benchPrincipal, Purpose: benchPurpose})
			if err != nil {
				return 0, err
			}
			t0 := time.Now()
			rc, _, err := e.vault.Redeem(ctx, g.Token, vault.Requester{Principal: benchPrincipal, RemoteAddr: "127.0.0.1"})
			if err != nil {
				return 0, err
			}
			n, err := drain(rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			return time.Since(t0), check(n, err)
		}},
		{name: "GetObject", op: func(ctx context.Context) (time.Duration, error) {
			obj, err := e.client.GetObject(ctx, e.bucket, name, minio.GetObjectOptions{})
			if err != nil {
				return 0, err
			}
			n, err := drain(obj)
			if cerr := obj.Close(); err == nil {
				err = cerr
			}
			return 0, check(n, err)
		}},
		{name: "presigned GET", op: func(ctx context.Context) (time.Duration, error) {
			u, err := e.client.PresignedGetObject(ctx, e.bucket, name, time.Minute, nil)
			if err != nil {
				return 0, err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return 0, err
			}
			resp, err := e.http.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return 0, fmt.Errorf("presigned GET: %s", resp.Status)
			}
			return 0, check(drain(resp.Body))
		}},
	}
}

// checkRetrieval makes sure, once and untimed, that every contender returns
// the stored bytes, so the harness cannot time a broken path.
func (e *env) checkRetrieval(ctx context.Context, id, name string, want []byte) error {
	g, err := e.vault.Grant(ctx, id, vault.Access{Principal: benchPrincipal, Purpose: benchPurpose})
	if err != nil {
		return err
	}
	rc, _, err := e.vault.Redeem(ctx, g.Token, vault.Requester{Principal: benchPrincipal})
	if err != nil {
		return err
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("redeem returned other bytes (%d of %d, %v)", len(got), len(want), err)
	}
	obj, err := e.client.GetObject(ctx, e.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	got, err = io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("GetObject returned other bytes (%d of %d, %v)", len(got), len(want), err)
	}
	return nil
}
