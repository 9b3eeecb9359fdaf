package vault

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/vault/s3store"
	"github.com/idvault/idvault/vault/store"
)

// The S3 lifecycle backstop (s3store.SetExpiryRule) expires payloads tagged
// idvault-expire=yes; these tests check that the vault tags what it writes
// and takes the tag off a held payload. They cannot watch the rule delete
// anything: S3 and MinIO run lifecycle rules in days, asynchronously.

var holdActor = Actor{Principal: "legal-1", Reason: "case 7"}

// s3Deployment is a data bucket with object lock and key records in a
// second, unversioned bucket (the layout idvault init makes), on the shared
// MinIO; payloads are in the data bucket.
func s3Deployment(t *testing.T) (data, keys *s3store.Store, client *minio.Client, dataBucket string) {
	t.Helper()
	ctx := context.Background()
	srv := miniotest.Server(t)
	client = srv.Client(t)
	dataBucket = srv.NewBucket(t, true)
	data = s3BackendAt(t, srv, dataBucket, newClock())
	keys, err := s3store.New(ctx, client, srv.NewBucket(t, false), s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return data, keys, client, dataBucket
}

func payloadTags(t *testing.T, c *minio.Client, bucket, id string) map[string]string {
	t.Helper()
	oid, err := parseObjectID(id)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := c.GetObjectTagging(context.Background(), bucket, blobKey(oid), minio.GetObjectTaggingOptions{})
	if err != nil {
		t.Fatalf("GetObjectTagging(payload): %v", err)
	}
	return tg.ToMap()
}

var (
	expirableTags = map[string]string{s3store.ExpiryTag: "yes"}
	heldTags      = map[string]string{s3store.ExpiryTag: "no"}
)

// TestHoldUntagsPayloadOnS3: a payload Put through the vault carries the
// tag the backstop rule requires; Hold takes it off (before the fix the rule
// destroyed held payloads), Release puts it back, and both are idempotent.
func TestHoldUntagsPayloadOnS3(t *testing.T) {
	ctx := context.Background()
	v, _, info, tags := taggedDocument(t) // no tag update fails
	if got := tags(); !maps.Equal(got, expirableTags) {
		t.Fatalf("payload after Put: tags %v, want %v", got, expirableTags)
	}
	for _, step := range []struct {
		hold bool
		want map[string]string
	}{{true, heldTags}, {true, heldTags}, {false, expirableTags}, {false, expirableTags}, {true, heldTags}} {
		call := v.Admin().Release
		if step.hold {
			call = v.Admin().Hold
		}
		if err := call(ctx, info.ID, holdActor); err != nil {
			t.Fatalf("hold=%t: %v", step.hold, err)
		}
		if got := tags(); !maps.Equal(got, step.want) {
			t.Fatalf("payload after hold=%t: tags %v, want %v", step.hold, got, step.want)
		}
	}
}

// failingTagger fails SetExpirable while fail > 0 (counting down).
type failingTagger struct {
	store.Store
	fail atomic.Int32
}

var errTagInjected = errors.New("injected tagging failure")

func (f *failingTagger) SetExpirable(ctx context.Context, key string, expirable bool) error {
	if f.fail.Add(-1) >= 0 {
		return errTagInjected
	}
	return f.Store.(store.ExpiryTagger).SetExpirable(ctx, key, expirable)
}

// taggedDocument puts a document on an s3Deployment whose tag updates
// fail while st.fail counts down; tags reads its payload's tags.
func taggedDocument(t *testing.T) (v *testVault, st *failingTagger, info Info, tags func() map[string]string) {
	data, keys, c, bucket := s3Deployment(t)
	st = &failingTagger{Store: data}
	v = openTestVault(t, st, testKEK(t), func(c *Config) { c.Storage.KeyStore = keys })
	info = putImage(t, v, image(3000, ""), "member-1")
	return v, st, info, func() map[string]string { return payloadTags(t, c, bucket, info.ID) }
}

// TestHoldTagFailure: when the tag cannot be changed, Hold does not report
// success (the lifecycle rule could still destroy the payload): it returns
// an *ExpiryTagError wrapping the store's error, the vault itself already
// treats the document as held, and repeating Hold fixes the tag. A failed
// Release reports the same way; the document is released (Sweep deletes it
// on schedule) and repeating Release restores the tag.
func TestHoldTagFailure(t *testing.T) {
	ctx := context.Background()
	v, st, info, tags := taggedDocument(t)

	st.fail.Store(1)
	err := v.Admin().Hold(ctx, info.ID, holdActor)
	var te *ExpiryTagError
	if !errors.As(err, &te) || !te.Held || te.Object != info.ID || !errors.Is(err, errTagInjected) {
		t.Fatalf("Hold with a failing tag update: %v, want *ExpiryTagError{Held: true} wrapping the store's error", err)
	}
	if got := tags(); !maps.Equal(got, expirableTags) {
		t.Fatalf("tags after the failed Hold: %v (the failure was injected before the write)", got)
	}
	if err := v.Admin().Delete(ctx, info.ID, holdActor); !errors.Is(err, ErrHeld) {
		t.Fatalf("Delete after the half-done Hold: %v, want ErrHeld", err)
	}
	if err := v.Admin().Hold(ctx, info.ID, holdActor); err != nil {
		t.Fatalf("repeated Hold: %v", err)
	}
	if got := tags(); !maps.Equal(got, heldTags) {
		t.Fatalf("tags after the repeated Hold: %v, want %v", got, heldTags)
	}

	st.fail.Store(1)
	err = v.Admin().Release(ctx, info.ID, holdActor)
	if !errors.As(err, &te) || te.Held || !errors.Is(err, errTagInjected) {
		t.Fatalf("Release with a failing tag update: %v, want *ExpiryTagError{Held: false}", err)
	}
	v.clock.Advance(DefaultRetention + time.Hour)
	if rep, err := v.Admin().Sweep(ctx, holdActor); err != nil || rep.Expired != 1 {
		t.Fatalf("Sweep after the half-done Release: %+v, %v; want the document expired", rep, err)
	}
}

// releaseRacer runs hook inside the first SetExpirable(true): a Hold that
// completes between a Release's record and its tag.
type releaseRacer struct {
	*memstore.Store
	hook func()
}

func (r *releaseRacer) SetExpirable(ctx context.Context, key string, expirable bool) error {
	if h := r.hook; expirable && h != nil {
		r.hook = nil
		h()
	}
	return r.Store.SetExpirable(ctx, key, expirable)
}

// TestReleaseRacingHold: a Hold that completes while a Release is between
// its key record and its tag update must not end held but expirable by
// the store: the Release reads the markers again after tagging and takes
// the tag back.
func TestReleaseRacingHold(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	st := &releaseRacer{Store: mem}
	mem.Now = clockOf(st).Now // the wrapper hides the memstore's clock; keep them one
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(3000, ""), "member-1")
	oid, _ := parseObjectID(info.ID)
	if exp, ok := mem.Expirable(blobKey(oid)); !ok || !exp {
		t.Fatalf("payload after Put: expirable %t, exists %t", exp, ok)
	}
	if err := v.Admin().Hold(ctx, info.ID, holdActor); err != nil {
		t.Fatal(err)
	}
	var hookErr error
	st.hook = func() { hookErr = v.Admin().Hold(ctx, info.ID, holdActor) }
	if err := v.Admin().Release(ctx, info.ID, holdActor); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if hookErr != nil {
		t.Fatalf("the racing Hold: %v", hookErr)
	}
	if exp, _ := mem.Expirable(blobKey(oid)); exp {
		t.Fatal("the document is held (the racing Hold came last) but its payload is expirable by the store")
	}
	v.clock.Advance(DefaultRetention + time.Hour)
	if rep, err := v.Admin().Sweep(ctx, holdActor); err != nil || rep.Held != 1 {
		t.Fatalf("Sweep: %+v, %v; want the document held", rep, err)
	}
}

// TestSweepUntagsHeldPayload: a Hold whose tag update failed and was not
// repeated is repaired by the next Sweep that finds the held document past
// its deadline, before the lifecycle rule's days (a day past the longest
// retention) run out.
func TestSweepUntagsHeldPayload(t *testing.T) {
	ctx := context.Background()
	v, st, info, tags := taggedDocument(t)
	st.fail.Store(1)
	var te *ExpiryTagError
	if err := v.Admin().Hold(ctx, info.ID, holdActor); !errors.As(err, &te) {
		t.Fatalf("Hold with a failing tag update: %v, want *ExpiryTagError", err)
	}
	if got := tags(); !maps.Equal(got, expirableTags) {
		t.Fatalf("tags after the failed Hold: %v", got)
	}
	v.clock.Advance(DefaultRetention + time.Hour)
	if rep, err := v.Admin().Sweep(ctx, holdActor); err != nil || rep.Held != 1 {
		t.Fatalf("Sweep: %+v, %v; want the document held", rep, err)
	}
	if got := tags(); !maps.Equal(got, heldTags) {
		t.Fatalf("tags after Sweep: %v, want %v", got, heldTags)
	}
}
