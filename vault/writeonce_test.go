package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// TestRequireWriteOnceAudit: with the option on, Open refuses every store
// where audit batches could be deleted (a filesystem, a bucket without
// object lock, object lock with retention switched off) and accepts an
// object-lock bucket with key records in an unversioned one.
func TestRequireWriteOnceAudit(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Server(t)
	client := srv.Client(t)
	s3 := func(locked bool) store.Store {
		st, err := s3store.New(ctx, client, srv.NewBucket(t, locked), s3store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	keys := s3(false)
	for _, c := range []struct {
		name      string
		st        store.Store
		retention int64
		ok        bool
	}{
		{"filesystem", fsBackend(t), 0, false},
		{"bucket without object lock", s3(false), 0, false},
		{"object lock, AuditRetention < 0", s3(true), -1, false},
		{"object lock", s3(true), 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Store: c.st, KEK: testKEK(t), Storage: StorageConfig{KeyStore: keys}, Audit: AuditConfig{RequireWriteOnce: true}}
			cfg.Audit.Retention = cfgDuration(c.retention)
			v, err := Open(ctx, cfg)
			if c.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				v.Close(ctx)
				return
			}
			if !errors.Is(err, ErrInvalidArgument) {
				if v != nil {
					v.Close(ctx)
				}
				t.Fatalf("Open = %v, want ErrInvalidArgument", err)
			}
			// Refused before anything was written: no keyset, no audit log.
			if ks := storeKeys(t, c.st, ""); len(ks) != 0 {
				t.Fatalf("a refused Open wrote %d objects", len(ks))
			}
			// Without the option the same store opens (degraded, as documented).
			cfg.Audit.RequireWriteOnce = false
			v, err = Open(ctx, cfg)
			if err != nil {
				t.Fatalf("Open without RequireWriteOnceAudit: %v", err)
			}
			v.Close(ctx)
		})
	}
}

func cfgDuration(n int64) time.Duration { return time.Duration(n) }
