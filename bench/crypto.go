package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/idvault/idvault/internal/envelope"
)

// benchCrypto: the payload's streaming encryption and decryption against
// one AES-256-GCM Seal and Open of the whole buffer into a reused buffer
// (the physical limit), on the same plaintext.
func (e *env) benchCrypto(ctx context.Context) error {
	sizes := []int64{4 << 10, 256 << 10, 1 << 20, 5 << 20}
	for i, n := range sizes {
		key, err := e.dataKey(ctx, n)
		if err != nil {
			return err
		}
		cs, err := cryptoContenders(key, imageBytes(n, 200+uint64(i)))
		if err != nil {
			key.Destroy()
			return err
		}
		// Small objects are repeated so that one sample lasts long enough
		// to time; latencies are reported per object.
		reps := int(max(1, (4<<20)/n))
		for _, c := range cs {
			c.reps = reps
			inner := c.op
			c.op = func(ctx context.Context) (time.Duration, error) {
				for range reps {
					if _, err := inner(ctx); err != nil {
						return 0, err
					}
				}
				return 0, nil
			}
		}
		err = interleave(ctx, e.warmup(), e.iters(60, 3), 1, cs)
		key.Destroy()
		if err != nil {
			return err
		}
		// Only the sizes ID images have (1-5 MiB) carry the target: below
		// that the per-object setup (HKDF, headers) dominates by design.
		var t *target
		if n >= 1<<20 {
			t = atLeast(0.6)
		}
		for _, dir := range []string{"encrypt", "decrypt"} {
			cse := dir + " " + sizeName(n)
			for _, c := range cs {
				if c.name == "idvault "+dir || c.name == "AES-GCM "+dirRaw(dir) {
					e.add(c.measurement("crypto", cse, n, 1))
				}
			}
			e.res.compare("crypto "+cse+" throughput at p50: idvault / AES-GCM", "crypto", cse, "idvault "+dir, "AES-GCM "+dirRaw(dir), "p50_mb_per_s", t)
		}
	}
	return nil
}

func dirRaw(dir string) string {
	if dir == "encrypt" {
		return "Seal"
	}
	return "Open"
}

// dataKey seals a fresh data key as Put does (the KEK is in-process).
func (e *env) dataKey(ctx context.Context, size int64) (*envelope.Key, error) {
	var vid, oid [16]byte
	_, _ = rand.Read(vid[:])
	_, _ = rand.Read(oid[:])
	now := time.Now()
	_, key, err := envelope.Seal(ctx, e.kek, envelope.Metadata{
		VaultID: vid, ObjectID: oid, Kind: "bench", ContentType: "image/jpeg",
		Size: size, Created: now, Expires: now.Add(time.Hour),
	})
	return key, err
}

// cryptoContenders returns idvault encrypt and decrypt and AES-GCM Seal and
// Open of pt, each writing into a buffer allocated once here.
func cryptoContenders(key *envelope.Key, pt []byte) ([]*contender, error) {
	n := len(pt)
	var enc bytes.Buffer
	enc.Grow(int(envelope.PayloadSize(int64(n))))
	encrypt := func() error {
		enc.Reset()
		w, err := key.Encrypt(&enc)
		if err != nil {
			return err
		}
		if _, err := w.Write(pt); err != nil {
			return err
		}
		return w.Close()
	}
	if err := encrypt(); err != nil {
		return nil, err
	}
	payload := bytes.Clone(enc.Bytes()) // decrypt reads its own copy
	out := make([]byte, n+1)
	decrypt := func() error {
		r, err := key.Decrypt(bytes.NewReader(payload))
		if err != nil {
			return err
		}
		m, err := io.ReadFull(r, out)
		if err != io.ErrUnexpectedEOF || m != n {
			return fmt.Errorf("decrypt: %d bytes of %d (%v)", m, n, err)
		}
		return nil
	}
	if err := decrypt(); err != nil {
		return nil, err
	}
	if !bytes.Equal(out[:n], pt) {
		return nil, errors.New("decrypt: plaintext differs")
	}

	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	blk, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	ct := g.Seal(make([]byte, 0, n+g.Overhead()), nonce, pt, nil)
	opened := make([]byte, 0, n)
	return []*contender{
		{name: "idvault encrypt", op: func(context.Context) (time.Duration, error) { return 0, encrypt() }},
		{name: "AES-GCM Seal", op: func(context.Context) (time.Duration, error) {
			// Same nonce every time: a benchmark of the cipher's speed only.
			ct = g.Seal(ct[:0], nonce, pt, nil)
			return 0, nil
		}},
		{name: "idvault decrypt", op: func(context.Context) (time.Duration, error) { return 0, decrypt() }},
		{name: "AES-GCM Open", op: func(context.Context) (time.Duration, error) {
			var err error
			opened, err = g.Open(opened[:0], nonce, ct, nil)
			return 0, err
		}},
	}, nil
}
