package vault

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
)

// BenchmarkRedeemPipeline times Redeem's stream alone (the payload GET,
// the read-ahead, the decryption, a 32 KiB reader like the bench's) beside
// the same GET drained raw and decrypted without read-ahead, on MinIO and
// on an in-memory body:
//
//	go test -run '^$' -bench RedeemPipeline ./vault/
func BenchmarkRedeemPipeline(b *testing.B) {
	ctx := context.Background()
	srv := miniotest.Server(b)
	st, err := s3store.New(ctx, srv.Client(b), srv.NewBucket(b, false), s3store.Options{Prefix: "vault"})
	if err != nil {
		b.Fatal(err)
	}
	v := benchVault(b, st)
	buf := make([]byte, 32<<10)
	drainBuf := func(r io.Reader) int64 {
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, buf)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	for _, sz := range []int{1 << 20, 5 << 20} {
		name := map[int]string{1 << 20: "1MiB", 5 << 20: "5MiB"}[sz]
		info, err := v.Put(ctx, Document{Body: bytes.NewReader(image(sz, "")), Size: int64(sz), Subject: "m"})
		if err != nil {
			b.Fatal(err)
		}
		id, _ := parseObjectID(info.ID)
		md, key, err := v.loadRecord(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		rc, err := st.Get(ctx, blobKey(id))
		if err != nil {
			b.Fatal(err)
		}
		blob, _ := io.ReadAll(rc)
		rc.Close()
		run := func(b *testing.B, get func() io.ReadCloser, ra, decrypt bool) {
			b.SetBytes(int64(sz))
			b.ReportAllocs()
			for b.Loop() {
				var r io.ReadCloser = get()
				if ra {
					r = newReadAhead(r)
				}
				var src io.Reader = r
				if decrypt {
					dec, err := key.Decrypt(r)
					if err != nil {
						b.Fatal(err)
					}
					src = dec
				}
				if n := drainBuf(src); decrypt && n != md.Size {
					b.Fatalf("read %d", n)
				}
				r.Close()
			}
		}
		s3get := func() io.ReadCloser {
			rc, err := st.Get(ctx, blobKey(id))
			if err != nil {
				b.Fatal(err)
			}
			return rc
		}
		memget := func() io.ReadCloser { return io.NopCloser(bytes.NewReader(blob)) }
		b.Run("s3-raw/"+name, func(b *testing.B) { run(b, s3get, false, false) })
		b.Run("s3-readahead/"+name, func(b *testing.B) { run(b, s3get, true, false) })
		b.Run("s3-decrypt/"+name, func(b *testing.B) { run(b, s3get, false, true) })
		b.Run("s3-readahead-decrypt/"+name, func(b *testing.B) { run(b, s3get, true, true) })
		b.Run("mem-decrypt/"+name, func(b *testing.B) { run(b, memget, false, true) })
		b.Run("mem-readahead-decrypt/"+name, func(b *testing.B) { run(b, memget, true, true) })
	}
}
