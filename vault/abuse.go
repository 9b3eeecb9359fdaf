package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// AlertKind names what raised an alert.
type AlertKind string

// Alert kinds.
const (
	// AlertQuota: a principal went over a quota and was refused.
	AlertQuota AlertKind = "quota-exceeded"
	// AlertBulk: a principal's access rate jumped (a burst of distinct
	// documents), well before any quota is exhausted.
	AlertBulk AlertKind = "bulk-access"
	// AlertProbing: a burst of refused tokens (forged, expired, replayed,
	// someone else's) from one principal or one remote address.
	AlertProbing AlertKind = "refusal-burst"
	// AlertCanary: a canary document was granted or redeemed.
	AlertCanary AlertKind = "canary-touched"
	// AlertFrozen: a principal was frozen (Config.FreezeOnAlert).
	AlertFrozen AlertKind = "principal-frozen"
)

// Alert is raised on suspected abuse. It is also written to the audit log
// (event "alert", reason = Kind). It carries no secret.
type Alert struct {
	Time       time.Time
	Kind       AlertKind
	Principal  string
	RemoteAddr string
	Object     string // document ID, where one is involved
	Detail     string
}

// Quota bounds what one principal may do in a sliding window. Zero fields
// take the defaults.
type Quota struct {
	// Documents is how many distinct documents a principal may be granted
	// per Window (default 200: a busy human reviewer's hour).
	Documents int
	// Redemptions is how many tokens a principal may redeem per Window
	// (default 400: every document twice).
	Redemptions int
	// Window is the sliding window (default 1 h).
	Window time.Duration
	// Burst is how many distinct documents within BurstWindow raise a
	// bulk-access alert (default 30; a reviewer reads one in tens of
	// seconds, a script several a second).
	Burst int
	// BurstWindow defaults to 5 min.
	BurstWindow time.Duration
}

// Defaults of Quota and of the probing detector.
const (
	DefaultQuotaDocuments   = 200
	DefaultQuotaRedemptions = 400
	DefaultQuotaWindow      = time.Hour
	DefaultBurst            = 30
	DefaultBurstWindow      = 5 * time.Minute
	DefaultProbeThreshold   = 10 // refusals per principal or address
	DefaultProbeWindow      = 5 * time.Minute
)

func (q Quota) withDefaults() Quota {
	if q.Documents <= 0 {
		q.Documents = DefaultQuotaDocuments
	}
	if q.Redemptions <= 0 {
		q.Redemptions = DefaultQuotaRedemptions
	}
	if q.Window <= 0 {
		q.Window = DefaultQuotaWindow
	}
	if q.Burst <= 0 {
		q.Burst = DefaultBurst
	}
	if q.BurstWindow <= 0 {
		q.BurstWindow = DefaultBurstWindow
	}
	return q
}

func (v *Vault) quotaFor(principal string) Quota {
	q := v.cfg.Quota
	if v.cfg.QuotaFor != nil {
		q = v.cfg.QuotaFor(principal)
	}
	return q.withDefaults()
}

// principalMAC keys per-principal state in the store without naming the
// principal in a key.
func (v *Vault) principalMAC(principal string) string {
	sys, _ := v.keyset()
	m := hmac.New(sha256.New, sys.indexKey)
	m.Write([]byte("idvault principal v1\x00"))
	m.Write([]byte(principal))
	return hex.EncodeToString(m.Sum(nil))
}

func frozenKey(mac string) string { return "frozen/" + mac }

// checkGrantQuota notes a grant of id to principal and refuses it over
// quota; it raises a bulk-access alert when the burst threshold is crossed.
func (v *Vault) checkGrantQuota(ctx context.Context, principal, remote string, id objectID) error {
	mac := v.principalMAC(principal)
	if err := v.checkFrozen(ctx, mac); err != nil {
		return err
	}
	q := v.quotaFor(principal)
	now := v.now()
	n, err := v.limiter.Note(ctx, "grant-docs/"+mac, id.String(), now, q.Window)
	if err != nil {
		return fmt.Errorf("vault: quota: %w", err)
	}
	burst, err := v.limiter.Note(ctx, "grant-burst/"+mac, id.String(), now, q.BurstWindow)
	if err != nil {
		return fmt.Errorf("vault: quota: %w", err)
	}
	if burst == q.Burst {
		v.alert(ctx, Alert{Kind: AlertBulk, Principal: principal, RemoteAddr: remote,
			Detail: fmt.Sprintf("%d distinct documents in %s", burst, q.BurstWindow)})
	}
	if n > q.Documents {
		if n == q.Documents+1 { // alert once per crossing, not per request
			v.alert(ctx, Alert{Kind: AlertQuota, Principal: principal, RemoteAddr: remote, Object: id.String(),
				Detail: fmt.Sprintf("grants: %d distinct documents in %s, quota %d", n, q.Window, q.Documents)})
		}
		return fmt.Errorf("vault: grant: %w", ErrQuotaExceeded)
	}
	return nil
}

func (v *Vault) checkRedeemQuota(ctx context.Context, principal, remote string, tokenID [16]byte) error {
	mac := v.principalMAC(principal)
	if err := v.checkFrozen(ctx, mac); err != nil {
		return err
	}
	q := v.quotaFor(principal)
	n, err := v.limiter.Note(ctx, "redeem/"+mac, hex.EncodeToString(tokenID[:]), v.now(), q.Window)
	if err != nil {
		return fmt.Errorf("vault: quota: %w", err)
	}
	if n > q.Redemptions {
		if n == q.Redemptions+1 {
			v.alert(ctx, Alert{Kind: AlertQuota, Principal: principal, RemoteAddr: remote,
				Detail: fmt.Sprintf("redemptions: %d in %s, quota %d", n, q.Window, q.Redemptions)})
		}
		return fmt.Errorf("vault: redeem: %w", ErrQuotaExceeded)
	}
	return nil
}

// checkFrozen takes the principal's keyed hash (principalMAC).
func (v *Vault) checkFrozen(ctx context.Context, mac string) error {
	if !v.cfg.FreezeOnAlert {
		return nil
	}
	_, err := getSmall(ctx, v.st, frozenKey(mac), 64)
	switch {
	case err == nil:
		return ErrFrozen
	case errors.Is(err, store.ErrNotFound):
		return nil
	default:
		return fmt.Errorf("vault: checking freeze: %w", err)
	}
}

// noteRefusal feeds the probing detector: a burst of refused tokens from
// one principal or one remote address raises an alert.
func (v *Vault) noteRefusal(ctx context.Context, principal, remote, tokenID string) {
	member := tokenID
	if member == "" { // a token that did not open: every attempt counts
		var r [8]byte
		rand.Read(r[:])
		member = hex.EncodeToString(r[:])
	}
	keys := []struct{ key, principal, remote string }{}
	if principal != "" {
		keys = append(keys, struct{ key, principal, remote string }{"probe-p/" + v.principalMAC(principal), principal, ""})
	}
	if host := remoteHost(remote); host != "" {
		// Keyed like principals: no raw address in a limiter key (and IPv6
		// colons are outside the store's key alphabet).
		keys = append(keys, struct{ key, principal, remote string }{"probe-a/" + v.principalMAC("addr\x00"+host), "", host})
	}
	for _, k := range keys {
		n, err := v.limiter.Note(ctx, k.key, member, v.now(), DefaultProbeWindow)
		if err == nil && n == DefaultProbeThreshold {
			v.alert(ctx, Alert{Kind: AlertProbing, Principal: k.principal, RemoteAddr: k.remote,
				Detail: fmt.Sprintf("%d refused tokens in %s", n, DefaultProbeWindow)})
		}
	}
}

func remoteHost(addr string) string {
	if addr == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return clip(addr, 64)
}

// alert writes the alert to the audit log, tells Config.OnAlert, and
// freezes the principal when Config.FreezeOnAlert is set.
func (v *Vault) alert(ctx context.Context, a Alert) {
	a.Time = v.now().UTC()
	_ = v.audit(ctx, audit.Record{Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: string(a.Kind),
		Principal: clip(a.Principal, 256), RemoteAddr: clip(a.RemoteAddr, 128), Object: a.Object, Detail: clip(a.Detail, 500)})
	if v.cfg.OnAlert != nil {
		v.cfg.OnAlert(a)
	}
	if v.cfg.FreezeOnAlert && a.Principal != "" && a.Kind != AlertFrozen {
		body := stamp(a.Time)
		err := v.st.Put(ctx, frozenKey(v.principalMAC(a.Principal)), bytes.NewReader(body), int64(len(body)), store.PutOptions{IfAbsent: true})
		if err == nil {
			v.alert(ctx, Alert{Kind: AlertFrozen, Principal: a.Principal, Detail: "after " + string(a.Kind)})
		}
	}
}

// Unfreeze lifts a freeze set by Config.FreezeOnAlert, audited with the
// acting principal (by) and the principal unfrozen.
func (v *Vault) Unfreeze(ctx context.Context, principal string, by Actor) error {
	if v.isClosed() {
		return ErrClosed
	}
	if err := by.check("unfreeze"); err != nil {
		return err
	}
	if err := v.audit(ctx, audit.Record{Event: audit.EventAlert, Outcome: audit.OutcomeOK, Reason: "unfrozen",
		Principal: by.principal(), Detail: clip("unfroze "+clip(principal, 256)+": "+by.Reason, 500)}); err != nil {
		return err
	}
	return v.st.Delete(ctx, frozenKey(v.principalMAC(principal)))
}
