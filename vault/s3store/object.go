package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault/store"
)

// maxVersionDeletes bounds how many versions of one key a Delete on an
// object-lock bucket removes before it gives up.
const maxVersionDeletes = 100

// Get implements store.Store. The object is requested before Get returns,
// so an absent key fails here with an error wrapping store.ErrNotFound; the
// body is then streamed from the response, never buffered.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3store: get: %w", err)
	}
	sent := time.Now()
	rc, _, h, err := s.core.GetObject(ctx, s.bucket, s.name(key), minio.GetObjectOptions{})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("s3store: get: %w", cerr)
		}
		return nil, mapErr("get", err)
	}
	s.clock.noteDate(h, sent, time.Now())
	return rc, nil
}

// Delete implements store.Store. On an object-lock bucket it removes every
// version of the key, newest first, and fails with store.ErrRetained at the
// first one still retained; elsewhere it is one S3 DELETE (a delete marker
// on a versioned bucket). See the package documentation.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3store: delete: %w", err)
	}
	name := s.name(key)
	if !s.locked {
		if err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
			return mapErr("delete", err)
		}
		return nil
	}
	for range maxVersionDeletes {
		info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
		if err != nil {
			if errors.Is(mapErr("", err), store.ErrNotFound) {
				return nil // gone, or only a delete marker left
			}
			return mapErr("delete", err)
		}
		if retained(info.Metadata, time.Now()) {
			return fmt.Errorf("s3store: delete: %w", store.ErrRetained)
		}
		err = s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{VersionID: info.VersionID})
		if err != nil {
			// MinIO refuses a locked version with a generic InvalidRequest;
			// ask the version itself rather than parse the message.
			if rerr := s.checkNotRetained(ctx, "delete", name, info.VersionID); errors.Is(rerr, store.ErrRetained) {
				return rerr
			}
			return mapErr("delete", err)
		}
	}
	return fmt.Errorf("s3store: delete: more than %d versions of one key", maxVersionDeletes)
}

// checkNotRetained fails with store.ErrRetained if the given version of
// name ("" for the current one) exists and is retained now.
func (s *Store) checkNotRetained(ctx context.Context, op, name, versionID string) error {
	info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{VersionID: versionID})
	if err != nil {
		if errors.Is(mapErr(op, err), store.ErrNotFound) {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3store: %s: %w", op, cerr)
		}
		return mapErr(op, err)
	}
	if retained(info.Metadata, time.Now()) {
		return fmt.Errorf("s3store: %s: %w", op, store.ErrRetained)
	}
	return nil
}

// retained reports whether an object with these response headers is under
// retention (any mode) or legal hold at now.
func retained(h http.Header, now time.Time) bool {
	if strings.EqualFold(h.Get("X-Amz-Object-Lock-Legal-Hold"), "ON") {
		return true
	}
	v := h.Get("X-Amz-Object-Lock-Retain-Until-Date")
	if v == "" || h.Get("X-Amz-Object-Lock-Mode") == "" {
		return false
	}
	until, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return true // unreadable date: refuse rather than risk a locked delete
	}
	return now.Before(until)
}

// List implements store.Store. It pages lazily; breaking out of the loop
// stops the listing (no goroutine is left behind).
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for obj, err := range s.objects(ctx, prefix, "list", false) {
			if err != nil {
				yield("", err)
				return
			}
			key, ok := strings.CutPrefix(obj.Key, s.prefix)
			if !ok || store.ValidKey(key) != nil {
				continue // not addressable through the Store
			}
			if !yield(key, nil) {
				return
			}
		}
		// minio-go ends silently when cancelled between pages.
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("s3store: list: %w", err))
		}
	}
}

// objects lists the objects under prefix (every version of each, newest
// first, when versions is set), for List and Hidden; op names the listing
// in errors. An invalid prefix, a failed page or the end of ctx ends it
// with an error.
func (s *Store) objects(ctx context.Context, prefix, op string, versions bool) iter.Seq2[minio.ObjectInfo, error] {
	return func(yield func(minio.ObjectInfo, error) bool) {
		if err := store.ValidPrefix(prefix); err != nil {
			yield(minio.ObjectInfo{}, err)
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{
			Prefix: s.name(prefix), Recursive: true, WithVersions: versions,
		}) {
			// minio-go keeps yielding a fetched page after cancellation;
			// check here.
			if err := ctx.Err(); err != nil {
				yield(minio.ObjectInfo{}, fmt.Errorf("s3store: %s: %w", op, err))
				return
			}
			if obj.Err != nil {
				yield(minio.ObjectInfo{}, mapErr(op, obj.Err))
				return
			}
			if !yield(obj, nil) {
				return
			}
		}
	}
}
