package main

import (
	"bytes"
	"context"
	"io"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault"
)

// benchPut: idvault Put against PutObject of the same bytes, and against
// age encryption streamed into PutObject.
func (e *env) benchPut(ctx context.Context) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	recipient := id.Recipient()
	cases := []struct {
		size  int64
		iters int
	}{
		{256 << 10, e.iters(40, 2)},
		{1 << 20, e.iters(40, 2)},
		{5 << 20, e.iters(25, 2)},
		{20 << 20, e.iters(12, 2)},
	}
	for i, c := range cases {
		data := imageBytes(c.size, uint64(i))
		ageLen, err := ageSize(data, recipient)
		if err != nil {
			return err
		}
		cs := []*contender{
			{name: "idvault Put", op: func(ctx context.Context) (time.Duration, error) {
				e.trace.vaultOp()
				_, err := e.vault.Put(ctx, vault.Document{
					Body: bytes.NewReader(data), Size: c.size, ContentType: vault.TypeJPEG,
					Kind: "bench", Subject: benchSubject,
				})
				return 0, err
			}},
			{name: "PutObject", op: func(ctx context.Context) (time.Duration, error) {
				_, err := e.client.PutObject(ctx, e.bucket, plainPrefix+randHex(16), bytes.NewReader(data), c.size,
					minio.PutObjectOptions{ContentType: vault.TypeJPEG})
				return 0, err
			}},
			{name: "PutObject If-None-Match", op: func(ctx context.Context) (time.Duration, error) {
				// Diagnostic: what the conditional (create-only) header alone
				// costs MinIO; the vault writes every payload this way.
				po := minio.PutObjectOptions{ContentType: vault.TypeJPEG}
				po.SetMatchETagExcept("*")
				_, err := e.client.PutObject(ctx, e.bucket, plainPrefix+randHex(16), bytes.NewReader(data), c.size, po)
				return 0, err
			}},
			{name: "age+PutObject", op: func(ctx context.Context) (time.Duration, error) {
				r, err := age.EncryptReader(bytes.NewReader(data), recipient)
				if err != nil {
					return 0, err
				}
				_, err = e.client.PutObject(ctx, e.bucket, agePrefix+randHex(16), r, ageLen,
					minio.PutObjectOptions{ContentType: "application/octet-stream"})
				return 0, err
			}},
		}
		cse := sizeName(c.size)
		e.setPhase("put " + cse)
		err = interleave(ctx, e.warmup(), c.iters, 1, cs)
		e.setPhase("")
		if err != nil {
			return err
		}
		for _, ct := range cs {
			e.add(ct.measurement("put", cse, c.size, 1))
		}
		var t *target
		switch c.size {
		case 256 << 10:
			t = atMost(1.5)
		case 5 << 20:
			t = atMost(1.15)
		}
		e.res.compare("put "+cse+" p50: idvault / PutObject", "put", cse, "idvault Put", "PutObject", "p50_ms", t)
		e.res.compare("put "+cse+" p50: idvault / age+PutObject", "put", cse, "idvault Put", "age+PutObject", "p50_ms", nil)
		e.res.compare("put "+cse+" p50: PutObject If-None-Match / PutObject", "put", cse, "PutObject If-None-Match", "PutObject", "p50_ms", nil)
	}
	return nil
}

// ageSize returns the length of data's age encryption, which PutObject needs
// up front. It is the same for every encryption to one X25519 recipient (a
// different one would make PutObject fail, not mismeasure).
func ageSize(data []byte, r age.Recipient) (int64, error) {
	ar, err := age.EncryptReader(bytes.NewReader(data), r)
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, ar)
}
