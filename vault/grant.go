package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idvault/idvault/internal/token"
	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// Access says to whom, why and for how long a document is granted.
type Access struct {
	// Principal is who may redeem the token (your reviewer's account ID).
	// Required; Redeem refuses anyone else.
	Principal string
	// Purpose says why (e.g. "age-check"); required, recorded in the audit log.
	Purpose string
	// TTL is how long the token is valid: default 60 s (DefaultGrantTTL).
	// Grant refuses a TTL above Config.Access.MaxGrantTTL with ErrInvalidArgument.
	TTL time.Duration
}

// Grant is a single-use access token and its expiry. The token is a bearer
// secret until spent: do not log it.
type Grant struct {
	Token     string
	ExpiresAt time.Time
}

// String redacts the token so a Grant can be logged safely.
func (g Grant) String() string {
	return "vault.Grant{Token: REDACTED, ExpiresAt: " + g.ExpiresAt.Format(time.RFC3339) + "}"
}

// GoString redacts the token too.
func (g Grant) GoString() string { return g.String() }

// Grant issues a single-use token that lets a.Principal read document id
// once, for a.Purpose, within a.TTL. It refuses absent and expired
// documents, and records the grant in the audit log first.
func (v *Vault) Grant(ctx context.Context, id string, a Access) (Grant, error) {
	if v.isClosed() {
		return Grant{}, ErrClosed
	}
	g, rec, err := v.grant(ctx, id, a)
	if err != nil {
		// Recorded even when a hung KMS or store took the whole deadline
		// (see DeadlineMargin).
		rec.Outcome, rec.Reason = audit.OutcomeRefused, reasonOf(err)
		if aerr := v.auditLate(ctx, rec); aerr != nil {
			return Grant{}, fmt.Errorf("%w (and %w)", err, aerr)
		}
		return Grant{}, err
	}
	return g, nil
}

func (v *Vault) grant(ctx context.Context, idStr string, a Access) (Grant, audit.Record, error) {
	rec := audit.Record{Event: audit.EventGrant, Principal: clip(a.Principal, 256), Purpose: clip(a.Purpose, 128)}
	if !validName(a.Principal, 256) || !validName(a.Purpose, 128) {
		return Grant{}, rec, fmt.Errorf("vault: grant: principal and purpose required (1-256, 1-128 bytes of UTF-8): %w", ErrInvalidArgument)
	}
	ttl := a.TTL
	if ttl <= 0 {
		ttl = DefaultGrantTTL
	}
	if ttl > v.cfg.Access.MaxGrantTTL {
		return Grant{}, rec, fmt.Errorf("vault: grant: TTL above MaxGrantTTL %s: %w", v.cfg.Access.MaxGrantTTL, ErrInvalidArgument)
	}
	id, err := parseObjectID(idStr)
	if err != nil {
		return Grant{}, rec, err
	}
	rec.Object = id.String()
	v.refreshKeys(ctx)
	// The payload must exist too: a key record left without one (a failed
	// Put, a half-finished delete) is not a document.
	payc := make(chan error, 1)
	go func() {
		rc, err := v.st.Get(ctx, blobKey(id))
		if err == nil {
			rc.Close()
		}
		payc <- err
	}()
	// The quota check reads the state chain (who is frozen) when this
	// instance's view is older than chainFresh: bring it up to date while
	// the records are read, rather than after. (An error here is the
	// quota check's to report: it reads again and fails closed.)
	chainc := make(chan struct{})
	go func() {
		defer close(chainc)
		_ = v.chain.fresh(ctx)
	}()
	md, key, err := v.loadRecord(ctx, id)
	perr := <-payc
	<-chainc
	if err != nil {
		return Grant{}, rec, err
	}
	key.Destroy()
	if perr != nil {
		rec.Subject = hex.EncodeToString(md.SubjectMAC)
		if errors.Is(perr, store.ErrNotFound) {
			return Grant{}, rec, fmt.Errorf("vault: grant %s: payload: %w", id, ErrNotFound)
		}
		return Grant{}, rec, fmt.Errorf("vault: grant %s: payload: %w", id, perr)
	}
	rec.Subject = hex.EncodeToString(md.SubjectMAC)
	if v.expired(md) {
		return Grant{}, rec, fmt.Errorf("vault: grant %s: %w", id, ErrExpired)
	}
	if err := v.checkGrantQuota(ctx, a.Principal, "", id); err != nil {
		return Grant{}, rec, err
	}
	// A canary is granted like any document (the prober learns nothing);
	// the alert, and a freeze, take effect from the next request on.
	if md.Canary {
		v.touchCanary(ctx, audit.EventGrant, a.Principal, "", id)
	}
	// Millisecond precision: what the token encodes, so ExpiresAt is exact.
	now := v.now().UTC().Truncate(time.Millisecond)
	c := token.Claims{ObjectID: id, Principal: a.Principal, Purpose: a.Purpose, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	if _, err := rand.Read(c.ID[:]); err != nil {
		return Grant{}, rec, err
	}
	_, sealer := v.keyset()
	tok, err := sealer.Seal(c)
	if err != nil {
		return Grant{}, rec, fmt.Errorf("vault: grant: %w", err)
	}
	rec.TokenID = hex.EncodeToString(c.ID[:])
	ok := rec
	ok.Outcome = audit.OutcomeOK
	ok.Detail = "ttl " + ttl.String()
	if err := v.audit(ctx, ok); err != nil {
		return Grant{}, rec, err
	}
	return Grant{Token: tok, ExpiresAt: c.ExpiresAt}, rec, nil
}

func validName(s string, max int) bool {
	return s != "" && len(s) <= max && utf8.ValidString(s)
}

// clip bounds an untrusted label for the audit log: at most n bytes of
// valid UTF-8 (invalid input is replaced, never copied).
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
