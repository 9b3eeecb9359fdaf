package audit_test

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/vaulttest"
)

// Write a few records, close the log, verify it and query it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	st, err := fsstore.Open(dir)
	if err != nil {
		panic(err)
	}

	// The signer key is a secret (the vault keeps it wrapped by its KEK);
	// the verifier key is public and goes to the security team.
	signerKey, verifierKey, err := audit.GenerateKey("idvault-audit-example")
	if err != nil {
		panic(err)
	}
	log, err := audit.NewAppender(ctx, st, signerKey, audit.AppenderOptions{})
	if err != nil {
		panic(err)
	}
	for _, r := range []audit.Record{
		{Event: audit.EventGrant, Outcome: audit.OutcomeOK, Object: "9f86d081884c7d65", Principal: "reviewer-7", Purpose: "age-check"},
		{Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Object: "9f86d081884c7d65", Principal: "reviewer-7", Purpose: "age-check"},
		{Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "replayed", Object: "9f86d081884c7d65", Principal: "reviewer-9"},
	} {
		// Append returns once the record is durable; on error, refuse.
		if _, err := log.Append(ctx, r); err != nil {
			panic(err)
		}
	}
	if err := log.Close(ctx); err != nil {
		panic(err)
	}

	rep, err := audit.Verify(ctx, st, verifierKey, audit.VerifyOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("ok:", rep.OK(), "records:", rep.Logs[0].Records, "final:", rep.Logs[0].Final)

	// Only records a valid signed checkpoint covers.
	for r, err := range audit.Scan(ctx, st, audit.Filter{Outcome: audit.OutcomeRefused, Verified: rep.VerifiedSizes()}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(r.Seq, r.Event, r.Outcome, r.Reason, r.Principal)
	}
	// Output:
	// ok: true records: 3 final: true
	// 2 redeem refused replayed reviewer-9
}

// Hand the signed tree heads to someone outside the store, and check the
// store against them later: records erased with their checkpoints in
// between are caught.
func ExampleHeads() {
	ctx := context.Background()
	st := vaulttest.NewStore() // in production: fsstore or s3store
	signerKey, verifierKey, err := audit.GenerateKey("idvault-audit-example")
	if err != nil {
		panic(err)
	}
	log, err := audit.NewAppender(ctx, st, signerKey, audit.AppenderOptions{})
	if err != nil {
		panic(err)
	}
	for range 3 {
		if _, err := log.Append(ctx, audit.Record{Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "reviewer-7"}); err != nil {
			panic(err)
		}
	}
	if err := log.Close(ctx); err != nil {
		panic(err)
	}

	heads, err := audit.Heads(ctx, st, verifierKey)
	if err != nil {
		panic(err)
	}
	witness := audit.FormatHeads(heads) // keep this outside the store

	// Later: the heads become trusted trees for Verify.
	kept, err := audit.ParseHeads(witness, verifierKey)
	if err != nil {
		panic(err)
	}
	opts := audit.VerifyOptions{Trusted: map[string]tlog.Tree{}, Finals: map[string]int64{}}
	for _, h := range kept {
		opts.Trusted[h.Log] = h.Tree
		if h.Final {
			opts.Finals[h.Log] = h.Tree.N
		}
	}
	rep, err := audit.Verify(ctx, st, verifierKey, opts)
	fmt.Println("heads:", len(kept), "size:", kept[0].Tree.N, "final:", kept[0].Final, "ok:", err == nil && rep.OK())
	// Output:
	// heads: 1 size: 3 final: true ok: true
}
