package s3store

import (
	"context"
	"fmt"
	"io"
	"iter"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault/store"
)

var _ store.HiddenReader = (*Store)(nil)

// Hidden implements store.HiddenReader: the keys under prefix whose newest
// version is a delete marker while an older version holds data. On a
// bucket without versioning it yields nothing.
func (s *Store) Hidden(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		var cur string
		var markerFirst, reported bool
		for obj, err := range s.objects(ctx, prefix, "list versions", true) {
			if err != nil {
				yield("", err)
				return
			}
			key := strings.TrimPrefix(obj.Key, s.prefix)
			if key != cur {
				// Versions of one key come newest first.
				cur, markerFirst, reported = key, obj.IsDeleteMarker, false
				continue
			}
			if markerFirst && !reported && !obj.IsDeleteMarker {
				reported = true
				if !yield(key, nil) {
					return
				}
			}
		}
	}
}

// GetHidden implements store.HiddenReader: the newest version of key that
// is not a delete marker, also when a delete marker hides it.
func (s *Store) GetHidden(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	name := s.name(key)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	version := ""
	found := false
	for obj := range s.client.ListObjectsIter(lctx, s.bucket, minio.ListObjectsOptions{
		Prefix: name, Recursive: true, WithVersions: true,
	}) {
		if obj.Err != nil {
			return nil, mapErr("list versions", obj.Err)
		}
		if obj.Key != name {
			continue
		}
		if !obj.IsDeleteMarker {
			version, found = obj.VersionID, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("s3store: get hidden: %w", store.ErrNotFound)
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{VersionID: version})
	if err != nil {
		return nil, mapErr("get hidden", err)
	}
	return rc, nil
}
