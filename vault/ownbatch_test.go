package vault

import (
	"context"
	"regexp"
	"testing"

	"github.com/idvault/idvault/internal/memstore"
)

// TestOwnBatchesNotReadBack: an instance takes the records of the batches
// its own appender writes into its view of the logs as they are written
// (AppenderOptions.OnBatch) and never reads them back from the store; its
// releases are known as logged once folded, which adoption relies on; and
// another instance still reads them from the store. Before the change,
// every batch of an instance's own log was read back (a GET and the body)
// within viewPollEvery.
func TestOwnBatchesNotReadBack(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	spy := newGetSpy(mem)
	kek := testKEK(t)
	v := openTestVault(t, spy, kek, nil)
	info := putImage(t, v, image(20<<10, ""), "member-1")
	spy.armed.Store(true)
	var toks [][16]byte
	for range 4 {
		g := grant(t, v, info.ID, "reviewer")
		if _, err := redeemAll(v, g.Token, "reviewer"); err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tokenOf(t, v, g.Token))
	}
	v.fold.flush(t)
	for range 2 {
		if err := v.view.poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	own := regexp.MustCompile("^" + regexp.QuoteMeta("audit/"+v.log.LogID()+"/") + `\d{20}$`)
	if found, _ := spy.count(own); found != 0 {
		t.Errorf("the instance read %d batches of its own log back from the store", found)
	}
	for _, tok := range toks {
		if !v.view.logged(tok) {
			t.Errorf("token %x: folded release not known as logged (adoption would fold it again)", tok)
		}
		if spent, err := v.view.isSpent(ctx, tok); err != nil || !spent {
			t.Errorf("token %x: isSpent = %v, %v", tok, spent, err)
		}
	}
	// Another instance reads them from the store.
	b := openTestVault(t, mem, kek, nil)
	if err := b.view.sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if !b.view.logged(tok) {
			t.Errorf("token %x: the other instance does not see its release", tok)
		}
	}
}
