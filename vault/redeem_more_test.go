package vault

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// TestTamperedPayloadHTTP (issue 12.6): a document whose first 16 KiB do
// not authenticate gets the uniform 404 and spends nothing; one tampered
// later releases only the authentic segments before the bad one.
func TestTamperedPayloadHTTP(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.new(t)
			v := openTestVault(t, st, testKEK(t), nil)
			srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, RefusalFloor: -1}))
			defer srv.Close()
			const size = 100 << 10
			first := putImage(t, v, image(size, ""), "m")
			g := grant(t, v, first.ID, "r")
			flipByte(t, st, "blobs/"+first.ID, 2000)
			resp, body := get(t, "GET", srv.URL+"/"+g.Token, "r")
			if resp.StatusCode != 404 || string(body) != notFoundBody {
				t.Fatalf("tampered first segment: status %d", resp.StatusCode)
			}
			if n := len(storeKeys(t, st, audit.LedgerPrefix)); n != 0 {
				t.Fatalf("tampered document spent the token (%d entries)", n)
			}
			later := putImage(t, v, image(size, ""), "m")
			g = grant(t, v, later.ID, "r")
			const off = 60 << 10
			flipByte(t, st, "blobs/"+later.ID, off)
			rc, _, err := v.Redeem(ctx, g.Token, Requester{Principal: "r"})
			if err != nil {
				t.Fatalf("tampered past the first 16 KiB: %v", err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("read of a tampered segment: %v", err)
			}
			if n < RedeemAuthBytes || n >= off {
				t.Fatalf("released %d bytes before ErrTampered; want the authentic segments before offset %d", n, off)
			}
			v.fold.flush(t)
			for r, err := range audit.Scan(ctx, st, audit.Filter{Event: audit.EventRedeem, Object: first.ID}) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Outcome != audit.OutcomeRefused || r.Reason != "tampered" {
					t.Fatalf("tampered first segment audited as %s/%s", r.Outcome, r.Reason)
				}
			}
		})
	}
}

// dropStore breaks payload bodies after limit bytes with
// io.ErrUnexpectedEOF, as a dropped connection does.
type dropStore struct {
	store.Store
	limit int64
}

type dropReader struct {
	io.ReadCloser
	left int64
}

func (d *dropReader) Read(p []byte) (int, error) {
	if d.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.ReadCloser.Read(p)
	d.left -= int64(n)
	return n, err
}

func (d *dropStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := d.Store.Get(ctx, key)
	if err != nil || !strings.HasPrefix(key, "blobs/") || d.limit < 0 {
		return rc, err
	}
	return &dropReader{ReadCloser: rc, left: d.limit}, nil
}

// TestDroppedStreamNotTampered (issue 17.5): a store connection that drops
// mid-stream is an I/O error, not ErrTampered; dropped within the first
// 16 KiB it refuses the redemption without spending the token.
func TestDroppedStreamNotTampered(t *testing.T) {
	ds := &dropStore{Store: fsBackend(t), limit: -1}
	v := openTestVault(t, ds, testKEK(t), nil)
	want := image(200<<10, "")
	info := putImage(t, v, want, "m")
	g := grant(t, v, info.ID, "r")
	ds.limit = 100 << 10
	got, err := redeemAll(v, g.Token, "r")
	if err == nil || errors.Is(err, ErrTampered) {
		t.Fatalf("dropped mid-stream: %v, want an I/O error that is not ErrTampered", err)
	}
	if !bytes.Equal(got, want[:len(got)]) {
		t.Fatal("released bytes differ from the document")
	}
	ds.limit = 4 << 10
	g = grant(t, v, info.ID, "r")
	if _, err := redeemAll(v, g.Token, "r"); err == nil || errors.Is(err, ErrTampered) {
		t.Fatalf("dropped in the first segment: %v", err)
	}
	ds.limit = -1
	if got, err := redeemAll(v, g.Token, "r"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a redemption refused for a dropped stream spent the token: %v", err)
	}
}

// TestGrantWithoutPayload (issue 17.5): a key record left without its
// payload is not a document: Grant refuses it.
func TestGrantWithoutPayload(t *testing.T) {
	v, st := newMemVault(t)
	info := putImage(t, v, image(5000, ""), "m")
	if err := st.Delete(context.Background(), "blobs/"+info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Grant(context.Background(), info.ID, Access{Principal: "r", Purpose: "p"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("grant of a key record without payload: %v, want ErrNotFound", err)
	}
}
