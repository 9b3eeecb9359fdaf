package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"maps"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// objectTags reads the tags of the object name (full name, store prefix
// included) through the test's own client.
func objectTags(t *testing.T, c *minio.Client, bucket, name string) map[string]string {
	t.Helper()
	tg, err := c.GetObjectTagging(context.Background(), bucket, name, minio.GetObjectTaggingOptions{})
	if err != nil {
		t.Fatalf("GetObjectTagging(%q): %v", name, err)
	}
	return tg.ToMap()
}

// TestPutExpirable: every path of Put (a known size in one PUT, an unknown
// size that fits one part, an unknown size as a multipart upload) writes
// the tag ExpiryTag=yes with PutOptions.Expirable and no tag without it, on
// a plain and on an object-lock bucket; SetExpirable switches the tag, is
// idempotent, changes neither content nor versions, and reports an absent
// key as store.ErrNotFound.
//
// The lifecycle rule that reads the tag cannot be run here (S3 and MinIO
// apply rules in days, asynchronously): TestSetExpiryRule checks the rule
// as installed, this test the tags it matches on.
func TestPutExpirable(t *testing.T) {
	t.Parallel()
	srv := miniotest.Server(t)
	c := srv.Client(t)
	ctx := context.Background()
	big := make([]byte, s3store.PartSize+1000)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	small := big[:1000]
	yes := map[string]string{s3store.ExpiryTag: "yes"}
	no := map[string]string{s3store.ExpiryTag: "no"}
	for _, locked := range []bool{false, true} {
		bucket := srv.NewBucket(t, locked)
		s := newStore(t, srv, bucket, "tenant")
		for _, tc := range []struct {
			name string
			body []byte
			size int64
		}{
			{"known size", small, int64(len(small))},
			{"unknown size, one part", small, -1},
			{"unknown size, multipart", big, -1},
		} {
			for _, expirable := range []bool{true, false} {
				key := "blobs/" + randPrefix(t)
				// A plain reader: the unknown-size path must not see a length.
				body := io.MultiReader(bytes.NewReader(tc.body))
				if err := s.Put(ctx, key, body, tc.size, store.PutOptions{IfAbsent: true, Expirable: expirable}); err != nil {
					t.Fatalf("locked=%t %s: Put: %v", locked, tc.name, err)
				}
				want := map[string]string{}
				if expirable {
					want = yes
				}
				if got := objectTags(t, c, bucket, "tenant/"+key); !maps.Equal(got, want) {
					t.Fatalf("locked=%t %s, Expirable=%t: tags %v, want %v", locked, tc.name, expirable, got, want)
				}
			}
		}

		key := "blobs/switched"
		mustPut(t, s, key, small)
		for _, step := range []struct {
			expirable bool
			want      map[string]string
		}{{false, no}, {false, no}, {true, yes}, {true, yes}, {false, no}} {
			if err := s.SetExpirable(ctx, key, step.expirable); err != nil {
				t.Fatalf("locked=%t: SetExpirable(%t): %v", locked, step.expirable, err)
			}
			if got := objectTags(t, c, bucket, "tenant/"+key); !maps.Equal(got, step.want) {
				t.Fatalf("locked=%t: after SetExpirable(%t): tags %v, want %v", locked, step.expirable, got, step.want)
			}
		}
		if got, err := getAll(s, key); err != nil || !bytes.Equal(got, small) {
			t.Fatalf("locked=%t: content after SetExpirable: %d bytes, %v", locked, len(got), err)
		}
		if locked {
			if vs := versions(t, c, bucket, "tenant/"+key); len(vs) != 1 {
				t.Fatalf("SetExpirable added versions: %d", len(vs))
			}
		}
		if err := s.SetExpirable(ctx, "blobs/absent", false); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("locked=%t: SetExpirable of an absent key: %v, want store.ErrNotFound", locked, err)
		}
		if err := s.SetExpirable(ctx, "a//b", false); !errors.Is(err, store.ErrInvalidKey) {
			t.Fatalf("locked=%t: SetExpirable of an invalid key: %v, want store.ErrInvalidKey", locked, err)
		}
	}
}
