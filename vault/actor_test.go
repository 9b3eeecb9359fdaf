package vault

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/audit"
)

// Every administrative call refuses an empty actor before it changes
// anything, and records the actor it was given.
func TestAdminCallsRequireAndRecordActor(t *testing.T) {
	ctx := context.Background()
	st := fsBackend(t)
	v := openTestVault(t, st, testKEK(t), nil)
	info := putImage(t, v, image(4096, ""), "member-1")
	none := Actor{}
	blank := Actor{Principal: "  "}
	for _, a := range []Actor{none, blank} {
		checks := map[string]error{
			"Delete":         v.Admin().Delete(ctx, info.ID, a),
			"Hold":           v.Admin().Hold(ctx, info.ID, a),
			"Release":        v.Admin().Release(ctx, info.ID, a),
			"Unfreeze":       v.Admin().Unfreeze(ctx, "someone", a),
			"RotateTokenKey": v.Admin().RotateTokenKey(ctx, a, RotateOptions{}),
		}
		_, checks["EraseSubject"] = v.Admin().EraseSubject(ctx, "member-1", a)
		_, checks["Sweep"] = v.Admin().Sweep(ctx, a)
		for name, err := range checks {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s with actor %q: err = %v, want ErrInvalidArgument", name, a.Principal, err)
			}
		}
	}
	// The document survived every refused call.
	if _, err := v.Grant(ctx, info.ID, Access{Principal: "reviewer-1", Purpose: "age-check"}); err != nil {
		t.Fatalf("document gone after refused admin calls: %v", err)
	}

	by := Actor{Principal: "operator-7", Reason: "ticket 42"}
	if err := v.Admin().Hold(ctx, info.ID, by); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().Release(ctx, info.ID, by); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().RotateTokenKey(ctx, by, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().Unfreeze(ctx, "reviewer-1", by); err != nil {
		t.Fatal(err)
	}
	if err := v.Admin().Delete(ctx, info.ID, by); err != nil {
		t.Fatal(err)
	}
	putImage(t, v, image(4096, ""), "member-2")
	if _, err := v.Admin().EraseSubject(ctx, "member-2", by); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Admin().Sweep(ctx, by); err != nil {
		t.Fatal(err)
	}
	v.Close(ctx)
	want := map[audit.Event]bool{audit.EventHold: false, audit.EventRelease: false, audit.EventRotate: false,
		audit.EventDelete: false, audit.EventErase: false}
	unfrozen := false
	for r, err := range audit.Scan(ctx, st, audit.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := want[r.Event]; ok {
			if r.Principal != by.Principal {
				t.Errorf("%s record names principal %q, want %q", r.Event, r.Principal, by.Principal)
			}
			want[r.Event] = true
		}
		if r.Event == audit.EventAlert && r.Reason == "unfrozen" {
			unfrozen = r.Principal == by.Principal && strings.Contains(r.Detail, "reviewer-1")
		}
	}
	for ev, seen := range want {
		if !seen {
			t.Errorf("no %s record", ev)
		}
	}
	if !unfrozen {
		t.Error("unfreeze record does not name the actor and the unfrozen principal")
	}
}
