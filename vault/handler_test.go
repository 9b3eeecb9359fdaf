package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// principalHeader is a stand-in for real authentication in tests.
func principalHeader(r *http.Request) (string, error) {
	p := r.Header.Get("X-Test-Principal")
	if p == "" {
		return "", errors.New("unauthenticated")
	}
	return p, nil
}

func get(t *testing.T, method, url, principal string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if principal != "" {
		req.Header.Set("X-Test-Principal", principal)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// fetch GETs url through c as principal, reads the body to its end and
// returns the status: a client request that may run in a goroutine (it
// calls no t.Fatal).
func fetch(c *http.Client, url, principal string) (int, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Test-Principal", principal)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func TestHandlerEndToEndS3(t *testing.T) {
	v := openTestVault(t, s3Backend(t), testKEK(t), nil)
	srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader}))
	defer srv.Close()
	want := image(1<<20+17, "")
	info := putImage(t, v, want, "member-1")
	g := grant(t, v, info.ID, "reviewer-7")

	// HEAD and POST never spend the token.
	for _, m := range []string{http.MethodHead, http.MethodPost, http.MethodDelete} {
		resp, _ := get(t, m, srv.URL+"/"+g.Token, "reviewer-7")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("%s: %d", m, resp.StatusCode)
		}
	}
	resp, body := get(t, http.MethodGet, srv.URL+"/"+g.Token, "reviewer-7")
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	for h, want := range map[string]string{
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"Content-Type":            "image/jpeg",
		"Content-Security-Policy": "default-src 'none'",
	} {
		if got := resp.Header.Get(h); !strings.HasPrefix(got, want) {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	resp2, body2 := get(t, http.MethodGet, srv.URL+"/"+g.Token, "reviewer-7")
	if resp2.StatusCode != 404 {
		t.Fatalf("second GET: %d", resp2.StatusCode)
	}
	if resp2.Header.Get("Cache-Control") != "no-store" || string(body2) != notFoundBody {
		t.Fatal("404 without the same headers/body")
	}
}

// TestHandlerUniformRefusals: every kind of refusal is the same 404, byte
// for byte, headers included.
func TestHandlerUniformRefusals(t *testing.T) {
	v, st := newMemVault(t)
	var reasons []error
	srv := httptest.NewServer(v.Handler(HandlerOptions{Principal: principalHeader, OnError: func(_ *http.Request, err error) { reasons = append(reasons, err) }}))
	defer srv.Close()
	info := putImage(t, v, image(5000, ""), "m")
	spent := grant(t, v, info.ID, "r")
	if resp, _ := get(t, "GET", srv.URL+"/"+spent.Token, "r"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	expired := grant(t, v, info.ID, "r")
	wrong := grant(t, v, info.ID, "r")
	gone := putImage(t, v, image(5000, ""), "m")
	goneTok := grant(t, v, gone.ID, "r")
	gid, _ := parseObjectID(gone.ID)
	st.Delete(context.Background(), keyRecordKey(gid))
	// Expire one token now; the clock moves back for the others so each
	// refusal has its own cause.
	v.clock.Advance(DefaultGrantTTL + MaxLeeway + 1)
	if resp, body := get(t, "GET", srv.URL+"/"+expired.Token, "r"); resp.StatusCode != 404 || string(body) != notFoundBody {
		t.Fatal("expired token served")
	}
	v.clock.Advance(-(DefaultGrantTTL + MaxLeeway + 1))
	cases := map[string][2]string{
		"replayed":        {spent.Token, "r"},
		"wrong principal": {wrong.Token, "x"},
		"unauthenticated": {wrong.Token, ""},
		"garbage":         {"idv1_AAAA", "r"},
		"not a token":     {"favicon.ico", "r"},
		"deleted object":  {goneTok.Token, "r"},
		"path traversal":  {"..%2f..%2fsystem%2fkeyset", "r"},
	}
	var first http.Header
	for name, c := range cases {
		resp, body := get(t, "GET", srv.URL+"/"+c[0], c[1])
		if resp.StatusCode != 404 || string(body) != notFoundBody {
			t.Errorf("%s: status %d, %d-byte body", name, resp.StatusCode, len(body)) // never print the body: it may be an image
		}
		h := resp.Header.Clone()
		h.Del("Date")
		if first == nil {
			first = h
		} else if !equalHeaders(first, h) {
			t.Errorf("%s: headers differ: %v vs %v", name, h, first)
		}
	}
	if len(reasons) < len(cases)-1 {
		t.Fatalf("OnError saw %d refusals", len(reasons))
	}
	// The audit log has the precise reasons the client never saw.
	seen := map[string]bool{}
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Event: audit.EventRedeem, Outcome: audit.OutcomeRefused}) {
		if err != nil {
			t.Fatal(err)
		}
		seen[r.Reason] = true
	}
	for _, want := range []string{"token-replayed", "token-expired", "wrong-principal", "token-invalid", "not-found"} {
		if !seen[want] {
			t.Errorf("audit lacks reason %q (have %v)", want, seen)
		}
	}
	_ = store.ErrNotFound
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, ",") != strings.Join(b[k], ",") {
			return false
		}
	}
	return true
}

// FuzzHandler: no request path panics the handler or gets anything but a
// 404 or 405.
func FuzzHandler(f *testing.F) {
	v, _ := newMemVault(f)
	info := putImage(f, v, image(5000, ""), "m")
	g := grant(f, v, info.ID, "r")
	h := v.Handler(HandlerOptions{Principal: func(*http.Request) (string, error) { return "r", nil }, RefusalFloor: -1})
	f.Add("/" + g.Token[:20])
	f.Add("/idv1_")
	f.Add("/" + strings.Repeat("A", 5000))
	f.Add("//idv1_x/y")
	f.Add("/idv1_%00")
	f.Fuzz(func(t *testing.T, path string) {
		if strings.Contains(path, g.Token) {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = path
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 404 || rec.Body.String() != notFoundBody {
			t.Fatalf("path %q: %d", path, rec.Code)
		}
	})
}

// TestAuditPrivacy greps every byte of every audit object for the raw
// subject, the raw tokens and a plaintext marker.
func TestAuditPrivacy(t *testing.T) {
	const subject = "raw-subject-id-99123-bob@example.org"
	const marker = "IMAGE-PLAINTEXT-MARKER-5b1d"
	v, st := newMemVault(t)
	info := putImage(t, v, image(100<<10, marker), subject)
	var secrets []string
	for i := range 3 {
		g := grant(t, v, info.ID, "r")
		secrets = append(secrets, g.Token, strings.TrimPrefix(g.Token, "idv1_"))
		p := "r"
		if i == 1 {
			p = "x" // a refusal too
		}
		redeemAll(v, g.Token, p)
	}
	redeemAll(v, secrets[0], "r") // replay
	v.Close(context.Background())
	objs := 0
	for _, k := range st.Keys() {
		if !strings.HasPrefix(k, "audit/") {
			continue
		}
		objs++
		b, _ := st.Bytes(k)
		for _, s := range append(secrets, subject, marker) {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("audit object %s contains a secret", k)
			}
		}
	}
	if objs < 2 {
		t.Fatalf("only %d audit objects", objs)
	}
}

// auditHasRedeemOK reports whether a durable release record of document id
// exists: in a log, or in a spend entry not yet folded.
func auditHasRedeemOK(t testing.TB, st store.Store, id string) bool {
	for _, k := range storeKeys(t, st, audit.LedgerPrefix) {
		b := readKey(t, st, k)
		if _, err := audit.LedgerExpiry(b); err != nil {
			continue
		}
		// The signature is checked by audit.CheckLedger; here the record's
		// object is enough.
		if bytes.Contains(b, []byte("record ")) && ledgerObject(b) == id {
			return true
		}
	}
	for r, err := range audit.Scan(context.Background(), st, audit.Filter{Object: id, Event: audit.EventRedeem, Outcome: audit.OutcomeOK}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Object == id {
			return true
		}
	}
	return false
}

// ledgerObject returns the object ID of the release record in a spend
// entry ("" when it does not parse).
func ledgerObject(b []byte) string {
	_, rest, _ := bytes.Cut(b, []byte("\nrecord "))
	enc, _, _ := bytes.Cut(rest, []byte("\n"))
	raw, err := base64.StdEncoding.DecodeString(string(enc))
	if err != nil {
		return ""
	}
	r, err := audit.ParseRecord(raw)
	if err != nil {
		return ""
	}
	return r.Object
}
