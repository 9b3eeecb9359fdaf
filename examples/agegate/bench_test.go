package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault"
)

// BenchmarkUpload: one multipart upload through the app's handler into the
// vault on the filesystem store (encryption, fsync'd writes, audit),
// including the deletion of the member's previous pending upload.
func BenchmarkUpload(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			te := newTestEnv(b, envOptions{maxUpload: 8 << 20})
			cookie := sessionCookieFor(b, te, "member-alice")
			body, ct := multipartBody([]formPart{
				{name: "kind", body: strings.NewReader("passport")},
				{name: "document", ctype: "image/png", body: bytes.NewReader(pngLike(size, 5))},
			})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/upload", bytes.NewReader(body))
				req.Header.Set("Content-Type", ct)
				if rec := serve(te, cookie, req); rec.Code != http.StatusSeeOther {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}

// BenchmarkReviewPage: rendering a queue of 20 documents, which mints 20
// single-use tokens (20 audited grants). Renders come an hour apart, as
// the quotas expect of one reviewer (20 grants a render: 200 an hour would
// be a thief's rate); outside the timer the reviewer signs in again each
// working day (sessions last 8 h) and the queue is refilled before its
// documents expire (72 h).
func BenchmarkReviewPage(b *testing.B) {
	te := newTestEnv(b, envOptions{})
	img := licencePNG(b, 1)
	fill := func(round int) {
		for i := range 20 {
			info := putBench(b, te, img, round*20+i)
			te.app.state.submit(submission{ID: info.ID, Member: fmt.Sprintf("bench-%d", round*20+i), Kind: "passport", Submitted: info.Created, Expires: info.Expires})
		}
	}
	fill(0)
	cookie := sessionCookieFor(b, te, "reviewer-rita")
	b.ReportAllocs()
	renders := 0
	for b.Loop() {
		rec := serve(te, cookie, httptest.NewRequest("GET", "/review", nil))
		if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `class="doc"`) != 20 {
			b.Fatalf("status %d, %d documents", rec.Code, strings.Count(rec.Body.String(), `class="doc"`))
		}
		te.clock.Advance(time.Hour + time.Second)
		if renders++; renders%7 == 0 {
			b.StopTimer()
			if renders%63 == 0 {
				te.clock.Advance(10 * time.Hour) // the batch has expired
				fill(renders / 63)
			}
			cookie = sessionCookieFor(b, te, "reviewer-rita")
			b.StartTimer()
		}
	}
}

// BenchmarkSecurityPage: the auditor's page over an audit log of about 500
// records (verify, three scans, the chart).
func BenchmarkSecurityPage(b *testing.B) {
	// The replays below raise refusal-burst alerts (in the log, as a real
	// page would show them); freezing would stop the setup.
	te := newTestEnv(b, envOptions{cfg: func(c *config) { c.Freeze = false }})
	img := licencePNG(b, 1)
	ctx := context.Background()
	for i := range 100 {
		info := putBench(b, te, img, i)
		g, err := te.v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-rita", Purpose: purpose})
		if err != nil {
			b.Fatal(err)
		}
		rc, _, err := te.v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-rita"})
		if err != nil {
			b.Fatal(err)
		}
		rc.Close()
		te.v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-rita"}) // refused: replay
		te.v.Admin().Delete(ctx, info.ID, vault.Actor{Principal: "bench", Reason: "bench"})
		te.clock.Advance(11 * time.Second) // a human pace: no bulk-access alert
	}
	cookie := sessionCookieFor(b, te, "auditor-ada")
	b.ReportAllocs()
	for b.Loop() {
		if rec := serve(te, cookie, httptest.NewRequest("GET", "/security", nil)); rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// putBench stores img in the vault for the subject bench-i.
func putBench(b *testing.B, te *testEnv, img []byte, i int) vault.Info {
	b.Helper()
	info, err := te.v.Put(context.Background(), vault.Document{Body: bytes.NewReader(img), Size: int64(len(img)), Subject: fmt.Sprintf("bench-%d", i)})
	if err != nil {
		b.Fatal(err)
	}
	return info
}

// serve sends req, signed in with cookie, to the app and returns the
// recorded response.
func serve(te *testEnv, cookie *http.Cookie, req *http.Request) *httptest.ResponseRecorder {
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	te.app.ServeHTTP(rec, req)
	return rec
}

func sessionCookieFor(tb testing.TB, te *testEnv, id string) *http.Cookie {
	tb.Helper()
	req := httptest.NewRequest("POST", "/login", strings.NewReader("account="+id))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	te.app.ServeHTTP(rec, req)
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		tb.Fatalf("sign-in: %d cookies", len(cs))
	}
	return cs[0]
}
