package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/idvault/idvault/vault/store"
)

// ErrInvalidDays: SetExpiryRule with days < 1.
var ErrInvalidDays = errors.New("s3store: lifecycle days must be at least 1")

// SetExpiryRule installs (or replaces) a bucket lifecycle rule that expires
// every object under the store's prefix + prefix days after it was written:
// a backstop that deletes objects on schedule even if no sweeper runs. On a
// versioned bucket the rule also removes versions days after they became
// noncurrent, and on any bucket it aborts multipart uploads left incomplete
// for days. S3 runs lifecycle rules asynchronously (typically daily), and
// object lock still protects retained objects from them.
//
// The rule's ID is derived from the full prefix, so calling SetExpiryRule
// again for the same prefix replaces its rule, and rules of other prefixes
// (other stores sharing the bucket) are kept. The bucket's configuration is
// read, changed and written back: concurrent calls on one bucket may lose
// one of the changes, so run this from one place (deployment or start-up).
func (s *Store) SetExpiryRule(ctx context.Context, prefix string, days int) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	if days < 1 {
		return ErrInvalidDays
	}
	full := s.name(prefix)
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code != "NoSuchLifecycleConfiguration" {
			return mapErr("get lifecycle", err)
		}
		cfg = nil
	}
	if cfg == nil {
		cfg = lifecycle.NewConfiguration()
	}
	rule := lifecycle.Rule{
		ID:                             expiryRuleID(full),
		Status:                         "Enabled",
		RuleFilter:                     lifecycle.Filter{Prefix: full},
		Expiration:                     lifecycle.Expiration{Days: lifecycle.ExpirationDays(days)},
		NoncurrentVersionExpiration:    lifecycle.NoncurrentVersionExpiration{NoncurrentDays: lifecycle.ExpirationDays(days)},
		AbortIncompleteMultipartUpload: lifecycle.AbortIncompleteMultipartUpload{DaysAfterInitiation: lifecycle.ExpirationDays(days)},
	}
	replaced := false
	for i := range cfg.Rules {
		if cfg.Rules[i].ID == rule.ID {
			cfg.Rules[i], replaced = rule, true
		}
	}
	if !replaced {
		cfg.Rules = append(cfg.Rules, rule)
	}
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, cfg); err != nil {
		return mapErr("set lifecycle", err)
	}
	return nil
}

// expiryRuleID is the ID of the lifecycle rule SetExpiryRule installs for
// objects whose full names (store prefix included) start with fullPrefix.
// It is a hash, so it stays within S3's 255-byte limit for any prefix.
func expiryRuleID(fullPrefix string) string {
	h := sha256.Sum256([]byte(fullPrefix))
	return "idvault-expiry-" + hex.EncodeToString(h[:16])
}
