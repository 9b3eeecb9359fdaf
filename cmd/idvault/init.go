package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/s3store"
)

var initCommand = &command{
	path:    "init",
	summary: "create or check the S3 buckets, install the lifecycle backstop, print the verifier key",
	usage:   "init [--store] URL --key-bucket BUCKET --kek-file FILE [--passphrase-file FILE] [--create-kek] [--max-retention DURATION]",
	args:    1,
	help: `Prepares the recommended S3 deployment, or checks one, and is safe to run again:

  1. the audit/data bucket (the URL's bucket) with object lock, so audit batches
     and checkpoints are write-once: created when absent; an existing bucket
     without object lock is refused (S3 enables it only at creation);
  2. the key bucket (--key-bucket) for key records, unversioned, so deleting a
     key record shreds its document: created when absent; a versioned or
     object-locked one is refused;
  3. the lifecycle backstop on the audit/data bucket: payloads (blobs/) tagged
     idvault-expire=yes expire a day after the longest retention
     (ceil(--max-retention / 24h) + 1 days). The vault tags every payload it
     writes, and tags a document under legal hold idvault-expire=no, so the
     backstop never deletes held evidence. Payloads written before this tag
     existed (idvault before the legal-hold fix) carry no tag: the backstop
     no longer applies to them, and Sweep deletes them as before. Running
     init again replaces an older untagged rule;
  4. opens the vault with RequireWriteOnceAudit (creating its keyset on first
     use) and prints the audit verifier key: pin it outside the store and pass
     it to "idvault audit verify --verifier-key".

The last line of the output is the verifier key alone.

Example:
  IDVAULT_PASSPHRASE=... idvault init 's3://idv-data?endpoint=s3.eu-west-1.amazonaws.com&region=eu-west-1' \
      --key-bucket idv-keys --kek-file /etc/idvault/kek --create-kek
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		storeURL := storeFlag(fs)
		keyBucket := fs.String("key-bucket", "", "the unversioned `BUCKET` for key records; required")
		kekFile, passFile := localKEKFlags(fs)
		create := fs.Bool("create-kek", false, "create the keyset file when it does not exist")
		maxRet := fs.Duration("max-retention", vault.DefaultRetention, "the vault's longest retention (Config.MaxRetention), which sets the backstop: `DURATION`")
		return func(ctx context.Context, c *cli) int {
			raw := *storeURL
			if len(c.args) == 1 {
				if raw != "" {
					return c.usageError("give the store once: as the argument or as --store")
				}
				raw = c.args[0]
			}
			return c.initS3(ctx, raw, *keyBucket, *kekFile, *passFile, *create, *maxRet)
		}
	},
}

func (c *cli) initS3(ctx context.Context, raw, keyBucket, kekFile, passFile string, createKEK bool, maxRet time.Duration) int {
	spec, err := c.storeSpecFrom(raw)
	if err != nil {
		return c.usageError(err.Error())
	}
	if spec.Kind != kindS3 {
		return c.usageError("init prepares S3 buckets; a directory store needs no preparation")
	}
	if keyBucket == "" {
		return c.usageError("no key bucket: pass --key-bucket (an unversioned bucket for key records)")
	}
	if keyBucket == spec.Bucket {
		return c.usageError("the key bucket must differ from the audit/data bucket: an object-locked bucket keeps every version of a deleted key record")
	}
	if maxRet <= 0 {
		return c.usageError("--max-retention must be positive")
	}
	kek, code := c.openLocalKEK(kekFile, passFile, createKEK)
	if kek == nil {
		return code
	}
	cfg, err := s3Config(spec, c.env)
	if err != nil {
		return c.fail(err)
	}
	client, err := s3store.NewClient(cfg)
	if err != nil {
		return c.fail(err)
	}
	if err := ensureBucket(ctx, c, client, spec.Bucket, spec.Region, true); err != nil {
		return c.fail(err)
	}
	if err := ensureBucket(ctx, c, client, keyBucket, spec.Region, false); err != nil {
		return c.fail(err)
	}
	data, err := s3store.New(ctx, client, spec.Bucket, s3store.Options{Prefix: spec.Prefix})
	if err != nil {
		return c.fail(err)
	}
	keys, err := s3store.New(ctx, client, keyBucket, s3store.Options{Prefix: spec.Prefix})
	if err != nil {
		return c.fail(err)
	}
	days := int((maxRet+24*time.Hour-1)/(24*time.Hour)) + 1
	if err := data.SetExpiryRule(ctx, "blobs/", days); err != nil {
		return c.fail(fmt.Errorf("installing the lifecycle backstop: %w", err))
	}
	fmt.Fprintf(c.stdout, "lifecycle backstop: payloads (blobs/) tagged %s=yes expire %d days after upload; held payloads are tagged no and kept\n", s3store.ExpiryTag, days)
	v, err := vault.Open(ctx, vault.Config{Store: data, KeyStore: keys, KEK: kek, RequireWriteOnceAudit: true})
	if err != nil {
		return c.fail(err)
	}
	id, vk := v.ID(), v.AuditVerifierKey()
	if err := v.Close(ctx); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "vault %s: ready, audit log write-once\n", id)
	fmt.Fprintf(c.stdout, "audit verifier key (pin it outside the store; idvault audit verify --verifier-key KEY):\n%s\n", vk)
	return exitOK
}

// ensureBucket creates bucket (with object lock if locked) or checks that
// the existing one is what the deployment needs.
func ensureBucket(ctx context.Context, c *cli, client *minio.Client, bucket, region string, locked bool) error {
	role := "key bucket"
	if locked {
		role = "audit/data bucket"
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if !ok {
		if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: region, ObjectLocking: locked}); err != nil {
			return fmt.Errorf("creating %s %s: %w", role, bucket, err)
		}
		if locked {
			fmt.Fprintf(c.stdout, "%s %s: created with object lock\n", role, bucket)
		} else {
			fmt.Fprintf(c.stdout, "%s %s: created, unversioned\n", role, bucket)
		}
		return nil
	}
	lockOn, err := objectLockOn(ctx, client, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if locked {
		if !lockOn {
			return fmt.Errorf("%s %s exists without object lock, which S3 enables only when a bucket is created; choose a new bucket name: %w", role, bucket, errBucketUnfit)
		}
		fmt.Fprintf(c.stdout, "%s %s: exists, object lock on\n", role, bucket)
		return nil
	}
	vc, err := client.GetBucketVersioning(ctx, bucket)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", role, bucket, err)
	}
	if lockOn || vc.Status == "Enabled" || vc.Status == "Suspended" {
		return fmt.Errorf("%s %s keeps object versions, so deleting a key record would not shred it; use a new unversioned bucket: %w", role, bucket, errBucketUnfit)
	}
	fmt.Fprintf(c.stdout, "%s %s: exists, unversioned\n", role, bucket)
	return nil
}

// errBucketUnfit: an existing bucket cannot serve the role init checks.
var errBucketUnfit = errors.New("bucket unfit for its role")

func objectLockOn(ctx context.Context, client *minio.Client, bucket string) (bool, error) {
	status, _, _, _, err := client.GetObjectLockConfig(ctx, bucket)
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "ObjectLockConfigurationNotFoundError", "NotImplemented":
			return false, nil
		}
		return false, err
	}
	return status == "Enabled", nil
}
