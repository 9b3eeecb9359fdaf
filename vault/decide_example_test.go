package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/vaulttest"
)

// A review queue: the listing goes through MixCanaries (a script walking
// it touches a decoy); the reviewer opens one document and decides it with
// Decide, which deletes it and tells the abuse detector the view was dealt
// with (decisions are counted too: a burst of them, or decisions about
// documents never opened, alert and freeze).
func ExampleVault_Decide() {
	ctx := context.Background()
	// In production: fsstore or s3store, and a KEK from a KMS (see Example).
	v, err := vault.Open(ctx, vault.Config{Store: vaulttest.NewStore(), KEK: vaulttest.NewKEK()})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close(ctx)

	var pending []string // your own records: real documents only
	for _, member := range []string{"member-1", "member-2", "member-3"} {
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: member})
		if err != nil {
			log.Fatal(err)
		}
		pending = append(pending, info.ID)
	}
	// The queue a script could walk lists canaries too: the vault plants
	// them among the uploads as they come (a new vault has none yet).
	listing, err := v.MixCanaries(ctx, pending)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listed:", len(listing), "of which real:", len(pending))

	// The reviewer is assigned pending[0] (never a canary), views it and
	// decides it (Decide accepts decisions only from someone who viewed
	// the document).
	id := pending[0]
	g, err := v.Grant(ctx, id, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	if err != nil {
		log.Fatal(err)
	}
	img, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"})
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, img) // shown to the reviewer
	img.Close()
	err = v.Decide(ctx, id, vault.Decision{Verdict: vault.Approved, Note: "over 18"}, vault.Actor{Principal: "reviewer-7", Reason: "age check"})
	fmt.Println("decided:", err)
	_, err = v.Grant(ctx, id, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	fmt.Println("deleted:", errors.Is(err, vault.ErrNotFound))
	// Output:
	// listed: 3 of which real: 3
	// decided: <nil>
	// deleted: true
}
