package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/s3store"
)

// childArg, as the first argument, makes the binary a memory-section child:
// it reads a childSpec as JSON on stdin, does one operation, and writes a
// childResult as JSON on stdout. The spec travels on stdin because it holds
// the MinIO secret and the KEK passphrase, which must not show up in ps.
const childArg = "-idvbench-rss-child"

// Modes of a child.
const (
	modeVaultPut    = "idvault Put"
	modeVaultRedeem = "idvault Grant+Redeem"
	modePutObject   = "PutObject"
	modeGetObject   = "GetObject"
)

// childSpec tells a child what to do. Format redacts it: it holds secrets.
type childSpec struct {
	Mode       string `json:"mode"`
	Server     server `json:"server"`
	Bucket     string `json:"bucket"`
	KeysetPath string `json:"keyset_path"`
	Passphrase []byte `json:"passphrase"`
	Size       int64  `json:"size"`
	Seed       uint64 `json:"seed"`
	Object     string `json:"object,omitempty"` // vault object ID or plain object name to read
}

// Format prints the mode only, for every verb.
func (s childSpec) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "childSpec(%s)", s.Mode) }

// childResult is what a child reports.
type childResult struct {
	PeakRSS int64  `json:"peak_rss"` // bytes, VmHWM at the end: the whole life of the process
	BaseRSS int64  `json:"base_rss"` // bytes, VmRSS after setup, before the operation
	Nanos   int64  `json:"nanos"`    // the operation alone
	Bytes   int64  `json:"bytes"`
	Object  string `json:"object,omitempty"` // what a put child wrote, for the read child
}

// benchMemory runs each 100 MiB operation in a fresh child process and
// reads the child's peak RSS, so that the harness's own heap (test data,
// earlier sections) does not count.
func (e *env) benchMemory(ctx context.Context) error {
	reps := e.iters(3, 1)
	order := []string{modeVaultPut, modeVaultRedeem, modePutObject, modeGetObject}
	results := map[string][]childResult{}
	for r := range reps {
		var vaultObj, plainObj string
		for _, mode := range order {
			spec := childSpec{
				Mode: mode, Server: e.srv, Bucket: e.bucket, KeysetPath: e.kekPath, Passphrase: e.pass,
				Size: e.opts.memSize, Seed: 300 + uint64(r),
			}
			switch mode {
			case modeVaultRedeem:
				spec.Object = vaultObj
			case modeGetObject:
				spec.Object = plainObj
			}
			res, err := e.runChild(ctx, spec)
			if err != nil {
				return fmt.Errorf("%s child: %w", mode, err)
			}
			switch mode {
			case modeVaultPut:
				vaultObj = res.Object
			case modePutObject:
				plainObj = res.Object
			}
			results[mode] = append(results[mode], res)
		}
	}
	cse := sizeName(e.opts.memSize)
	for _, mode := range order {
		rs := results[mode]
		peak := slices.MaxFunc(rs, func(a, b childResult) int { return int(a.PeakRSS - b.PeakRSS) })
		lat := make([]time.Duration, len(rs))
		for i, r := range rs {
			lat[i] = time.Duration(r.Nanos)
		}
		m := Measurement{
			Section: "memory", Case: cse, Contender: mode, Size: e.opts.memSize, Concurrency: 1, N: len(rs),
			P50Ms: ms(quantile(lat, 0.5)), P99Ms: ms(quantile(lat, 0.99)),
			PeakRSSMiB: float64(peak.PeakRSS) / (1 << 20), BaseRSSMiB: float64(peak.BaseRSS) / (1 << 20),
		}
		if p50 := quantile(lat, 0.5); p50 > 0 {
			m.MBps = float64(e.opts.memSize) / p50.Seconds() / 1e6
			m.OpsPerSec = 1 / p50.Seconds()
		}
		e.add(m)
	}
	e.res.compare("memory "+cse+" Put peak RSS (plain: PutObject)", "memory", cse, modeVaultPut, modePutObject, "peak_rss_mib", valueAtMost(64, "MiB"))
	e.res.compare("memory "+cse+" Redeem peak RSS (plain: GetObject)", "memory", cse, modeVaultRedeem, modeGetObject, "peak_rss_mib", valueAtMost(64, "MiB"))
	return nil
}

func (e *env) runChild(ctx context.Context, spec childSpec) (childResult, error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return childResult{}, err
	}
	cmd := exec.CommandContext(ctx, e.opts.exe, childArg)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return childResult{}, fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res childResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return childResult{}, fmt.Errorf("child output: %w", err)
	}
	if res.PeakRSS <= 0 || res.Bytes != spec.Size {
		return childResult{}, fmt.Errorf("child reported peak RSS %d, %d of %d bytes", res.PeakRSS, res.Bytes, spec.Size)
	}
	return res, nil
}

// errOut is where a child reports failure; the parent shows it.
var errOut io.Writer = os.Stderr

// childMain is the child's side: it returns the exit status.
func childMain(stdin io.Reader, stdout io.Writer) int {
	var spec childSpec
	if err := json.NewDecoder(stdin).Decode(&spec); err != nil {
		fmt.Fprintln(errOut, "child: spec:", err)
		return 1
	}
	res, err := runChildOp(context.Background(), spec)
	if err != nil {
		fmt.Fprintf(errOut, "child %v: %v\n", spec, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintln(errOut, "child:", err)
		return 1
	}
	return 0
}

func runChildOp(ctx context.Context, spec childSpec) (childResult, error) {
	var res childResult
	c, err := spec.Server.client()
	if err != nil {
		return res, err
	}
	var v *vault.Vault
	if spec.Mode == modeVaultPut || spec.Mode == modeVaultRedeem {
		kek, err := kms.OpenLocal(spec.KeysetPath, spec.Passphrase)
		if err != nil {
			return res, err
		}
		st, err := s3store.New(ctx, c, spec.Bucket, s3store.Options{Prefix: vaultPrefix})
		if err != nil {
			return res, err
		}
		if v, err = openVault(ctx, st, kek, nil); err != nil {
			return res, err
		}
		defer v.Close(context.WithoutCancel(ctx))
	}
	if res.BaseRSS, err = currentRSS(); err != nil {
		return res, err
	}

	t0 := time.Now()
	switch spec.Mode {
	case modeVaultPut:
		var info vault.Info
		info, err = v.Put(ctx, vault.Document{
			Body: newImageReader(spec.Size, spec.Seed), Size: spec.Size, ContentType: vault.TypeJPEG,
			Kind: "bench", Subject: benchSubject,
		})
		res.Object, res.Bytes = info.ID, info.Size
	case modeVaultRedeem:
		var g vault.Grant
		if g, err = v.Grant(ctx, spec.Object, vault.Access{Principal: benchPrincipal, Purpose: benchPurpose}); err != nil {
			return res, err
		}
		var rc io.ReadCloser
		if rc, _, err = v.Redeem(ctx, g.Token, vault.Requester{Principal: benchPrincipal}); err != nil {
			return res, err
		}
		res.Bytes, err = drain(rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	case modePutObject:
		res.Object = plainPrefix + randHex(16)
		var info minio.UploadInfo
		info, err = c.PutObject(ctx, spec.Bucket, res.Object, newImageReader(spec.Size, spec.Seed), spec.Size,
			minio.PutObjectOptions{ContentType: vault.TypeJPEG})
		res.Bytes = info.Size
	case modeGetObject:
		var obj *minio.Object
		if obj, err = c.GetObject(ctx, spec.Bucket, spec.Object, minio.GetObjectOptions{}); err != nil {
			return res, err
		}
		res.Bytes, err = drain(obj)
		if cerr := obj.Close(); err == nil {
			err = cerr
		}
	default:
		return res, errors.New("unknown mode")
	}
	res.Nanos = int64(time.Since(t0))
	if err != nil {
		return res, err
	}
	res.PeakRSS, err = peakRSS()
	return res, err
}
