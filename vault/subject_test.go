package vault

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/audit"
)

func roleByPrefix(p string) string {
	r, _, _ := strings.Cut(p, "-")
	return r
}

// TestListSubject: every document of the subject and nothing else (not
// another member's, not a canary, not a deleted one), views counted by
// role and only when served (a replay or a wrong principal is not a
// view), the call audited without the raw subject, and an unknown subject
// answered exactly like one whose documents are gone.
func TestListSubject(t *testing.T) {
	ctx := context.Background()
	v := openTestVault(t, fsBackend(t), testKEK(t), func(c *Config) { c.Access.RoleOf = roleByPrefix })
	const member = "member-raw-4411@example.org"
	d1 := putImage(t, v, image(2<<10, ""), member)
	v.clock.Advance(10e9)
	d2 := putImage(t, v, image(3<<10, ""), member)
	gone := putImage(t, v, image(1<<10, ""), member)
	other := putImage(t, v, image(1<<10, ""), "member-other")
	if _, err := v.Admin().PlantCanaries(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().Delete(ctx, gone.ID, testActor); err != nil {
		t.Fatal(err)
	}
	view := func(id, principal string) {
		g := grant(t, v, id, principal)
		if _, err := redeemAll(v, g.Token, principal); err != nil {
			t.Fatal(err)
		}
		if _, err := redeemAll(v, g.Token, principal); !errors.Is(err, ErrTokenReplayed) {
			t.Fatalf("replay: %v", err)
		}
	}
	view(d1.ID, "reviewer-1")
	view(d1.ID, "auditor-1")
	view(d1.ID, "auditor-2")
	view(other.ID, "reviewer-1")
	g := grant(t, v, d2.ID, "reviewer-1")
	if _, err := redeemAll(v, g.Token, "reviewer-2"); !errors.Is(err, ErrWrongPrincipal) {
		t.Fatalf("wrong principal: %v", err)
	}

	by := Actor{Principal: "dpo-1", Reason: "request 17"}
	docs, err := v.Admin().ListSubject(ctx, member, by)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].ID != d1.ID || docs[1].ID != d2.ID {
		t.Fatalf("listed %d documents, want d1 and d2 in upload order", len(docs))
	}
	if want := map[string]int{"reviewer": 1, "auditor": 2}; !maps.Equal(docs[0].Views, want) {
		t.Errorf("d1 views = %v, want %v", docs[0].Views, want)
	}
	if len(docs[1].Views) != 0 {
		t.Errorf("d2 views = %v, want none (a refused redemption is not a view)", docs[1].Views)
	}
	if docs[0].Size != 2<<10 || !docs[0].Created.Before(docs[1].Created) || !docs[0].Expires.Equal(docs[0].Created.Add(DefaultRetention)) || docs[0].Expired {
		t.Errorf("d1 info = %+v", docs[0].Info)
	}

	// An unknown subject and a subject whose documents are all gone get
	// the same answer.
	if _, err := v.Admin().EraseSubject(ctx, "member-other", testActor); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"member-other", "never-stored"} {
		docs, err := v.Admin().ListSubject(ctx, s, by)
		if err != nil || len(docs) != 0 {
			t.Fatalf("ListSubject(%d-byte subject) = %d documents, %v; want none, nil", len(s), len(docs), err)
		}
	}
	// Past the deadline, still held until swept: listed as expired.
	v.clock.Advance(DefaultRetention)
	docs, err = v.Admin().ListSubject(ctx, member, by)
	if err != nil || len(docs) != 2 || !docs[0].Expired {
		t.Fatalf("after the deadline: %d documents, %v", len(docs), err)
	}

	if _, err := v.Admin().ListSubject(ctx, member, Actor{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty actor: %v", err)
	}
	n := 0
	for r, err := range audit.Scan(ctx, v.st, audit.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.Subject+r.Detail+r.Principal+r.Reason, member) {
			t.Fatal("the raw subject reached the audit log")
		}
		if r.Event == EventSubjectAccess {
			n++
			if r.Principal != "dpo-1" || r.Subject == "" || !strings.Contains(r.Detail, "request 17") {
				t.Errorf("subject-access record = %+v", r)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d subject-access records, want 4 (one per call that answered)", n)
	}
}
