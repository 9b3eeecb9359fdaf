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

// Contender names of the redeem section.
const (
	nGrantRedeem       = "idvault Grant+Redeem"
	nRedeemAlone       = "idvault Redeem alone"
	nGrantRedeemRedis  = "idvault Grant+Redeem (redislimiter)"
	nRedeemAloneRedis  = "idvault Redeem alone (redislimiter)"
	nGetObject         = "GetObject"
	nPresigned         = "presigned GET"
	nCondPut           = "cond PUT"
	nCondPutGet        = "cond PUT+GetObject"
	nTwoCondPutsGet    = "2 cond PUTs+GetObject"
	floorRecordSize    = 600 // bytes: about a signed spend entry
	floorRecordPrefix  = "floor/"
	redeemFloorComment = "floor: a create-only PUT of a 600-byte object (If-None-Match: *), as the spend entry"
)

// benchRedeem: idvault Grant+Redeem (token, ledger, audit, decryption, whole
// body read), with the default store limiter and with redislimiter, against
// GetObject, an HTTP GET of a presigned URL and the floors single use with a
// durable release record cannot beat (a conditional PUT of a 600-byte
// object followed by the GetObject; two of them for Grant+Redeem), at
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
	e.res.Meta.Notes = append(e.res.Meta.Notes, redeemFloorComment)
	for i, c := range cases {
		data := imageBytes(c.size, 100+uint64(i))
		info, err := e.vault.Put(ctx, vault.Document{Body: bytes.NewReader(data), Size: c.size, Kind: "bench", Subject: benchSubject})
		if err != nil {
			return err
		}
		var rinfo vault.Info
		if e.rvault != nil {
			if rinfo, err = e.rvault.Put(ctx, vault.Document{Body: bytes.NewReader(data), Size: c.size, Kind: "bench", Subject: benchSubject}); err != nil {
				return err
			}
		}
		name := plainPrefix + randHex(16)
		if _, err := e.client.PutObject(ctx, e.bucket, name, bytes.NewReader(data), c.size, minio.PutObjectOptions{ContentType: vault.TypeJPEG}); err != nil {
			return err
		}
		if err := e.checkRetrieval(ctx, e.vault, info.ID, name, data); err != nil {
			return err
		}
		if e.rvault != nil {
			if err := e.checkRetrieval(ctx, e.rvault, rinfo.ID, name, data); err != nil {
				return err
			}
		}
		for _, conc := range []int{1, 8} {
			iters := c.iters
			if conc > 1 {
				iters = c.iters8
			}
			cs := e.retrievalContenders(info.ID, rinfo.ID, name, c.size)
			cse := fmt.Sprintf("%s c=%d", sizeName(c.size), conc)
			e.setPhase("redeem " + cse)
			err := interleave(ctx, e.warmup(), iters, conc, cs)
			e.setPhase("")
			if err != nil {
				return err
			}
			for _, ct := range cs {
				e.add(ct.measurement("redeem", cse, c.size, conc))
				alone := map[string]string{nGrantRedeem: nRedeemAlone, nGrantRedeemRedis: nRedeemAloneRedis}[ct.name]
				if m, ok := ct.partMeasurement("redeem", cse, alone, c.size, conc); ok {
					e.add(m)
				}
			}
			e.redeemChecks(cse, c.size)
		}
	}
	return nil
}

// redeemChecks adds the ratio lines of one redeem case, with issue 25's
// targets on the floors.
func (e *env) redeemChecks(cse string, size int64) {
	r := e.res
	var grantT, redisT *target
	if size == 1<<20 {
		grantT, redisT = atMost(1.5), atMost(1.3)
	}
	p := "redeem " + cse + " p50: "
	r.compare(p+"Redeem alone / cond PUT+GetObject", "redeem", cse, nRedeemAlone, nCondPutGet, "p50_ms", atMost(1.15))
	r.compare(p+"Grant+Redeem / 2 cond PUTs+GetObject", "redeem", cse, nGrantRedeem, nTwoCondPutsGet, "p50_ms", grantT)
	r.compare(p+"Redeem alone (redislimiter) / cond PUT+GetObject", "redeem", cse, nRedeemAloneRedis, nCondPutGet, "p50_ms", atMost(1.15))
	r.compare(p+"Grant+Redeem (redislimiter) / cond PUT+GetObject", "redeem", cse, nGrantRedeemRedis, nCondPutGet, "p50_ms", redisT)
	r.compare(p+"Grant+Redeem / GetObject", "redeem", cse, nGrantRedeem, nGetObject, "p50_ms", nil)
	r.compare(p+"Redeem alone / GetObject", "redeem", cse, nRedeemAlone, nGetObject, "p50_ms", nil)
	r.compare(p+"Grant+Redeem / presigned GET", "redeem", cse, nGrantRedeem, nPresigned, "p50_ms", nil)
	r.compare(p+"cond PUT / GetObject", "redeem", cse, nCondPut, nGetObject, "p50_ms", nil)
}

// retrievalContenders: id is the document in e.vault, rid the same bytes
// in e.rvault (unused when rvault is nil), name the plain object.
func (e *env) retrievalContenders(id, rid, name string, size int64) []*contender {
	check := func(n int64, err error) error {
		if err == nil && n != size {
			err = fmt.Errorf("read %d bytes, want %d", n, size)
		}
		return err
	}
	grantRedeem := func(v *vault.Vault, t *tracingStore, id string) op {
		return func(ctx context.Context) (time.Duration, error) {
			t.vaultOp()
			g, err := v.Grant(ctx, id, vault.Access{Principal: benchPrincipal, Purpose: benchPurpose})
			if err != nil {
				return 0, err
			}
			t0 := time.Now()
			rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: benchPrincipal, RemoteAddr: "127.0.0.1"})
			if err != nil {
				return 0, err
			}
			n, err := drain(rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			return time.Since(t0), check(n, err)
		}
	}
	get := func(ctx context.Context) error {
		obj, err := e.client.GetObject(ctx, e.bucket, name, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		n, err := drain(obj)
		if cerr := obj.Close(); err == nil {
			err = cerr
		}
		return check(n, err)
	}
	cs := []*contender{
		{name: nGrantRedeem, op: grantRedeem(e.vault, e.trace, id)},
		{name: nGetObject, op: func(ctx context.Context) (time.Duration, error) { return 0, get(ctx) }},
		{name: nPresigned, op: func(ctx context.Context) (time.Duration, error) {
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
		{name: nCondPut, op: func(ctx context.Context) (time.Duration, error) { return 0, e.condPut(ctx) }},
		{name: nCondPutGet, op: func(ctx context.Context) (time.Duration, error) {
			if err := e.condPut(ctx); err != nil {
				return 0, err
			}
			return 0, get(ctx)
		}},
		{name: nTwoCondPutsGet, op: func(ctx context.Context) (time.Duration, error) {
			for range 2 {
				if err := e.condPut(ctx); err != nil {
					return 0, err
				}
			}
			return 0, get(ctx)
		}},
	}
	if e.rvault != nil {
		cs = append(cs, &contender{name: nGrantRedeemRedis, op: grantRedeem(e.rvault, e.rtrace, rid)})
	}
	return cs
}

// floorRecord is the body of the floor's conditional PUT.
var floorRecord = bytes.Repeat([]byte{'r'}, floorRecordSize)

// condPut creates a fresh 600-byte object with If-None-Match: * (what a
// spend entry costs MinIO at least).
func (e *env) condPut(ctx context.Context) error {
	po := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	po.SetMatchETagExcept("*")
	_, err := e.client.PutObject(ctx, e.bucket, floorRecordPrefix+randHex(16), bytes.NewReader(floorRecord), floorRecordSize, po)
	return err
}

// checkRetrieval makes sure, once and untimed, that every contender returns
// the stored bytes, so the harness cannot time a broken path.
func (e *env) checkRetrieval(ctx context.Context, v *vault.Vault, id, name string, want []byte) error {
	g, err := v.Grant(ctx, id, vault.Access{Principal: benchPrincipal, Purpose: benchPurpose})
	if err != nil {
		return err
	}
	rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: benchPrincipal})
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
