package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
	"github.com/minio/minio-go/v7/pkg/tags"

	"github.com/idvault/idvault/vault/store"
)

// ExpiryTag is the object tag that marks an object as expirable by the
// rule SetExpiryRule installs: the rule matches only objects tagged
// ExpiryTag=yes. Put writes it (value "yes") with PutOptions.Expirable, and
// SetExpirable switches it between "yes" and "no": the vault sets "no" on
// the payload of a document under legal hold, so the rule never deletes it.
// Object tags are metadata: changing them is allowed on an object-locked
// bucket and creates no new version.
const ExpiryTag = "idvault-expire"

const (
	expiryTagYes = "yes"
	expiryTagNo  = "no"
)

// ErrInvalidDays: SetExpiryRule with days < 1.
var ErrInvalidDays = errors.New("s3store: lifecycle days must be at least 1")

// SetExpiryRule installs (or replaces) the bucket lifecycle rules that
// expire every object under the store's prefix + prefix that is tagged
// ExpiryTag=yes, days after it was written: a backstop that deletes objects
// on schedule even if no sweeper runs. Objects without that tag (written
// without PutOptions.Expirable, written before this tag existed, or
// switched off by SetExpirable, as the vault does for a document under
// legal hold) are never expired by it. On a versioned bucket the rule also
// removes tagged versions days after they became noncurrent. A second
// rule, on the prefix alone, aborts multipart uploads left incomplete for
// days (S3 refuses a tag filter on that action; an incomplete upload is no
// object, so no hold applies to it; MinIO ignores the action) and removes
// delete markers that no longer hide any version. S3 runs lifecycle rules
// asynchronously (typically daily), and object lock still protects
// retained objects from them.
//
// The rules' IDs are derived from the full prefix, so calling SetExpiryRule
// again for the same prefix replaces its rules (including the untagged rule
// earlier versions installed under the same ID), and rules of other
// prefixes (other stores sharing the bucket) are kept. The bucket's
// configuration is read, changed and written back: concurrent calls on one
// bucket may lose one of the changes, so run this from one place
// (deployment or start-up).
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
	for _, rule := range expiryRules(full, days) {
		replaced := false
		for i := range cfg.Rules {
			if cfg.Rules[i].ID == rule.ID {
				cfg.Rules[i], replaced = rule, true
			}
		}
		if !replaced {
			cfg.Rules = append(cfg.Rules, rule)
		}
	}
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, cfg); err != nil {
		return mapErr("set lifecycle", err)
	}
	return nil
}

// expiryRules are the rules SetExpiryRule installs for fullPrefix.
func expiryRules(full string, days int) []lifecycle.Rule {
	d := lifecycle.ExpirationDays(days)
	expire := lifecycle.Rule{
		ID:     expiryRuleID(full),
		Status: "Enabled",
		RuleFilter: lifecycle.Filter{And: lifecycle.And{
			Prefix: full,
			Tags:   []lifecycle.Tag{{Key: ExpiryTag, Value: expiryTagYes}},
		}},
		Expiration:                  lifecycle.Expiration{Days: d},
		NoncurrentVersionExpiration: lifecycle.NoncurrentVersionExpiration{NoncurrentDays: d},
	}
	// S3 refuses a tag filter on AbortIncompleteMultipartUpload, and MinIO
	// refuses a rule whose only action is that one (it ignores it); an
	// expired delete marker (one with no version left behind it) is
	// harmless to remove and makes the rule valid on both.
	abort := lifecycle.Rule{
		ID:                             abortRuleID(full),
		Status:                         "Enabled",
		RuleFilter:                     lifecycle.Filter{Prefix: full},
		Expiration:                     lifecycle.Expiration{DeleteMarker: true},
		AbortIncompleteMultipartUpload: lifecycle.AbortIncompleteMultipartUpload{DaysAfterInitiation: d},
	}
	return []lifecycle.Rule{expire, abort}
}

// SetExpirable implements store.ExpiryTagger: it sets the object's tags to
// ExpiryTag=yes (expirable) or ExpiryTag=no, replacing any other tags of
// the object (the store owns the tags of what it writes). It changes
// neither the content nor the retention, and adds no version. An absent key
// is an error wrapping store.ErrNotFound.
func (s *Store) SetExpirable(ctx context.Context, key string, expirable bool) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	v := expiryTagNo
	if expirable {
		v = expiryTagYes
	}
	t, err := tags.NewTags(map[string]string{ExpiryTag: v}, true)
	if err != nil {
		return fmt.Errorf("s3store: set expirable: %w", err)
	}
	if err := s.client.PutObjectTagging(ctx, s.bucket, s.name(key), t, minio.PutObjectTaggingOptions{}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("s3store: set expirable: %w", cerr)
		}
		return mapErr("set expirable", err)
	}
	return nil
}

// expiryRuleID is the ID of the expiration rule SetExpiryRule installs for
// objects whose full names (store prefix included) start with fullPrefix.
// It is a hash, so it stays within S3's 255-byte limit for any prefix.
func expiryRuleID(fullPrefix string) string {
	h := sha256.Sum256([]byte(fullPrefix))
	return "idvault-expiry-" + hex.EncodeToString(h[:16])
}

// abortRuleID is the ID of the rule that aborts stale multipart uploads
// under fullPrefix.
func abortRuleID(fullPrefix string) string {
	h := sha256.Sum256([]byte(fullPrefix))
	return "idvault-abort-" + hex.EncodeToString(h[:16])
}
