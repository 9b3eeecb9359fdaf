package audit_test

import (
	"context"
	"fmt"
	"os"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/fsstore"
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

	for r, err := range audit.Scan(ctx, st, audit.Filter{Outcome: audit.OutcomeRefused}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(r.Seq, r.Event, r.Outcome, r.Reason, r.Principal)
	}
	// Output:
	// ok: true records: 3 final: true
	// 2 redeem refused replayed reviewer-9
}
