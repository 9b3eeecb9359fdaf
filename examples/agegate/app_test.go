package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault"
)

// TestReviewFlow: upload → pending → the reviewer's single-use link serves
// the image once → approve → the decision is kept, the image is gone.
func TestReviewFlow(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	img := licencePNG(t, 1)
	alice := te.login("member-alice")
	if r := alice.upload(img, "image/png"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/member?uploaded=1" {
		t.Fatalf("upload: status %d, Location %q", r.status, r.header.Get("Location"))
	}
	if r := alice.get("/member?uploaded=1"); !strings.Contains(r.body, "Pending review") {
		t.Fatalf("member page does not say pending review:\n%s", r.body)
	}

	rita := te.login("reviewer-rita")
	urls, ids, _ := rita.reviewQueue()
	if len(urls) != 1 {
		t.Fatalf("queue shows %d documents, want 1", len(urls))
	}
	first := rita.get(urls[0])
	if first.status != http.StatusOK || first.body != string(img) || first.header.Get("Content-Type") != "image/png" {
		t.Fatalf("first fetch: status %d, %d bytes, type %q", first.status, len(first.body), first.header.Get("Content-Type"))
	}
	if cc := first.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("image Cache-Control %q", cc)
	}
	if again := rita.get(urls[0]); again.status != http.StatusNotFound {
		t.Fatalf("second fetch of the same link: status %d, want 404", again.status)
	}
	// Reloading mints a new link that works once.
	urls2, _, _ := rita.reviewQueue()
	if len(urls2) != 1 || urls2[0] == urls[0] {
		t.Fatalf("reload did not mint a new link")
	}
	if r := rita.get(urls2[0]); r.status != http.StatusOK || r.body != string(img) {
		t.Fatalf("fresh link: status %d", r.status)
	}

	// A token granted now (before the decision) must be useless after it.
	g, err := te.v.Grant(context.Background(), ids[0], vault.Access{Principal: "reviewer-rita", Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	r := rita.postForm("/review/decide", url.Values{"id": {ids[0]}, "outcome": {"approve"}, "birthdate": {"1990-04-01"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/review?done=approved" {
		t.Fatalf("decide: status %d, Location %q, body:\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if _, err := te.v.Grant(context.Background(), ids[0], vault.Access{Principal: "reviewer-rita", Purpose: purpose}); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Grant after the decision: %v, want ErrNotFound", err)
	}
	if _, _, err := te.v.Redeem(context.Background(), g.Token, vault.Requester{Principal: "reviewer-rita"}); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Redeem after the decision: %v, want ErrNotFound", err)
	}
	if n := te.countObjects(); n != 0 {
		t.Errorf("%d documents left in the store, want 0", n)
	}
	d, ok := te.app.state.decisionOf("member-alice")
	if !ok || d.Outcome != outcomeApproved || d.BirthDate != "1990-04-01" || d.Reviewer != "reviewer-rita" {
		t.Errorf("decision = %+v, %v", d, ok)
	}
	if r := alice.get("/member"); !strings.Contains(r.body, "Approved") {
		t.Errorf("member page does not say approved")
	}
	if urls, _, page := rita.reviewQueue(); len(urls) != 0 || !strings.Contains(page, "Nothing to review") {
		t.Errorf("queue not empty after the decision")
	}
	// The state file keeps the decision and nothing of the image.
	b, err := os.ReadFile(filepath.Join(te.dir, "agegate-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"birth_date": "1990-04-01"`)) || bytes.Contains(b, []byte("PNG")) || len(b) > 2048 {
		t.Errorf("state file: %d bytes:\n%s", len(b), b)
	}
}

// TestTokensPerReviewer: a link minted for one account shows nothing to any
// other account, signed in or not, and such attempts do not spend it.
func TestTokensPerReviewer(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	img := licencePNG(t, 2)
	rita, link, _ := te.queueOne("member-bob", img)
	for _, who := range []*user{te.login("reviewer-raj"), te.login("member-bob"), te.login("auditor-ada"), te.anonymous()} {
		if r := who.get(link); r.status != http.StatusNotFound || strings.Contains(r.body, "PNG") {
			t.Errorf("%q fetched rita's link: status %d", who.id, r.status)
		}
	}
	if r := rita.get(link); r.status != http.StatusOK || r.body != string(img) {
		t.Fatalf("rita's own fetch after the others: status %d", r.status)
	}
	// Raj gets links of his own, different from rita's.
	rajURLs, _, _ := te.login("reviewer-raj").reviewQueue()
	if len(rajURLs) != 1 || rajURLs[0] == link {
		t.Fatalf("raj's queue: %d links, or the same link as rita's", len(rajURLs))
	}
	if r := rita.get(rajURLs[0]); r.status != http.StatusNotFound {
		t.Errorf("rita fetched raj's link: status %d", r.status)
	}
}

// TestUploadValidation: every bad upload gets its own page and status, and
// leaves nothing stored and nothing pending.
func TestUploadValidation(t *testing.T) {
	const max = 64 << 10
	te := newTestEnv(t, envOptions{maxUpload: max})
	alice := te.login("member-alice")
	good := licencePNG(t, 3)
	full, fullCT := multipartBody([]formPart{
		{name: "kind", body: strings.NewReader("passport")},
		{name: "document", filename: "p.png", ctype: "image/png", body: bytes.NewReader(pngLike(32<<10, 1))},
	})
	cut := bytes.Index(full, []byte("\x89PNG")) + 16<<10 // in the middle of the image
	tests := []struct {
		name   string
		body   []byte
		ctype  string
		status int
		text   string
	}{
		{"too large for the vault", nil, "image/png", http.StatusRequestEntityTooLarge, "too large"},
		{"far too large", nil, "image/png", http.StatusRequestEntityTooLarge, "too large"},
		{"declared text/plain", nil, "text/plain", http.StatusUnsupportedMediaType, "JPEG, PNG or WebP"},
		{"declared pdf", nil, "application/pdf", http.StatusUnsupportedMediaType, "JPEG, PNG or WebP"},
		{"no content type", nil, "", http.StatusUnsupportedMediaType, "JPEG, PNG or WebP"},
		{"png declared as jpeg", nil, "image/jpeg", http.StatusUnsupportedMediaType, "not the type it claims"},
		{"gif declared as png", nil, "image/png", http.StatusUnsupportedMediaType, "not the type it claims"},
		{"truncated multipart", full[:cut], fullCT, http.StatusBadRequest, "cut short"},
		{"truncated before the closing boundary", full[:len(full)-8], fullCT, http.StatusBadRequest, "cut short"},
		{"not multipart", []byte("document=x"), "application/x-www-form-urlencoded", http.StatusBadRequest, "multipart"},
		{"no boundary", full, "multipart/form-data", http.StatusBadRequest, "multipart"},
		{"garbage body", []byte("not a multipart body at all"), fullCT, http.StatusBadRequest, "cut short"},
	}
	bodies := map[string][]byte{
		"too large for the vault": pngLike(max+1, 2), // within the form allowance: the vault refuses it
		"far too large":           pngLike(4*max, 3), // past the form allowance: MaxBytesReader refuses it
		"declared text/plain":     good,
		"declared pdf":            good,
		"no content type":         good,
		"png declared as jpeg":    good,
		"gif declared as png":     append([]byte("GIF89a"), good[6:]...),
	}
	before := te.countObjects()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if img, ok := bodies[tc.name]; ok {
				r = alice.upload(img, tc.ctype)
			} else {
				r = alice.uploadRaw(bytes.NewReader(tc.body), tc.ctype)
			}
			if r.status != tc.status || !strings.Contains(r.body, tc.text) {
				t.Errorf("status %d, want %d; page:\n%s", r.status, tc.status, r.body)
			}
			if n := te.countObjects(); n != before {
				t.Errorf("%d documents stored after a refused upload, want %d", n, before)
			}
			if st := te.app.state.status("member-alice", te.clock.Now()); st.State != "none" {
				t.Errorf("member status %q after a refused upload", st.State)
			}
		})
	}

	t.Run("two documents", func(t *testing.T) {
		body, ct := multipartBody([]formPart{
			{name: "document", ctype: "image/png", body: bytes.NewReader(good)},
			{name: "document", ctype: "image/png", body: bytes.NewReader(good)},
		})
		if r := alice.uploadRaw(bytes.NewReader(body), ct); r.status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.status)
		}
		if n := te.countObjects(); n != before {
			t.Errorf("%d documents stored, want %d: the first must be deleted again", n, before)
		}
	})
	t.Run("unknown kind", func(t *testing.T) {
		body, ct := multipartBody([]formPart{
			{name: "kind", body: strings.NewReader("national-id-back")},
			{name: "document", ctype: "image/png", body: bytes.NewReader(good)},
		})
		if r := alice.uploadRaw(bytes.NewReader(body), ct); r.status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.status)
		}
	})
	t.Run("no document", func(t *testing.T) {
		body, ct := multipartBody([]formPart{{name: "kind", body: strings.NewReader("passport")}})
		if r := alice.uploadRaw(bytes.NewReader(body), ct); r.status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.status)
		}
	})
	t.Run("accepted after all that", func(t *testing.T) {
		if r := alice.upload(good, "image/png"); r.status != http.StatusSeeOther {
			t.Fatalf("status %d", r.status)
		}
		if n := te.countObjects(); n != before+1 {
			t.Errorf("%d documents, want %d", n, before+1)
		}
	})
}

// TestUploadNoTempFiles: an upload far larger than the memory threshold of
// ParseMultipartForm (32 MiB for FormFile, 10 MiB in the usual idiom)
// creates no temporary file, writes no byte of the image in clear
// anywhere, and is never held in memory whole.
func TestUploadNoTempFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 34 MiB")
	}
	const size = 34 << 20
	te := newTestEnv(t, envOptions{maxUpload: 40 << 20})
	alice := te.login("member-alice")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	// Stream the request body from a generator, so the test itself never
	// holds the image either; remember a window of it to look for on disk.
	pr, pw := io.Pipe()
	form := newStreamingForm(pw)
	first := pngLike(4096, 99)
	marker := bytes.Clone(first[1024:1088]) // 64 random bytes from inside the image
	go func() {
		pw.CloseWithError(form.write(func(w io.Writer) error {
			if _, err := w.Write(first); err != nil {
				return err
			}
			_, err := io.CopyN(w, rand.NewChaCha8([32]byte{7}), size-int64(len(first)))
			return err
		}))
	}()
	// A spooled part lives only while the request runs (net/http removes
	// it after the handler), so watch TMPDIR all through the upload.
	spooled := watchDir(tmp)
	peak := watchHeap()
	r := alice.uploadRaw(pr, form.contentType())
	heapPeak := peak()
	if names := spooled(); len(names) > 0 {
		t.Errorf("files appeared in TMPDIR during the upload: %q: the form was spooled to disk", names)
	}
	if r.status != http.StatusSeeOther {
		t.Fatalf("upload: status %d:\n%s", r.status, r.body)
	}
	if heapPeak > size/2 {
		t.Errorf("the heap grew by %d MiB during a %d MiB upload: the image was held whole somewhere", heapPeak>>20, size>>20)
	} else {
		t.Logf("heap grew by at most %.1f MiB during a %d MiB upload", float64(heapPeak)/(1<<20), size>>20)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("TMPDIR holds %d entries after the upload (first %q): the form was spooled to disk", len(entries), entries[0].Name())
	}
	// No file anywhere under the app's directory holds the image's bytes.
	filepath.WalkDir(te.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, marker) {
			t.Errorf("%s holds image bytes in clear", path)
		}
		return nil
	})
	if n := te.countObjects(); n != 1 {
		t.Errorf("%d documents stored, want 1", n)
	}
}

// TestAuthorization: each role sees its own pages only.
func TestAuthorization(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	users := map[string]*user{
		"":              te.anonymous(),
		"member-alice":  te.login("member-alice"),
		"reviewer-rita": te.login("reviewer-rita"),
		"auditor-ada":   te.login("auditor-ada"),
	}
	tests := []struct {
		who, method, path string
		status            int
	}{
		{"", "GET", "/review", http.StatusSeeOther},
		{"", "GET", "/security", http.StatusSeeOther},
		{"", "GET", "/member", http.StatusSeeOther},
		{"", "POST", "/review/decide", http.StatusUnauthorized},
		{"", "POST", "/upload", http.StatusUnauthorized},
		{"", "GET", "/login", http.StatusOK},
		{"", "GET", "/img/idv1_AAAA", http.StatusNotFound},
		{"member-alice", "GET", "/member", http.StatusOK},
		{"member-alice", "GET", "/review", http.StatusForbidden},
		{"member-alice", "GET", "/review/doc/00000000000000000000000000000000", http.StatusForbidden},
		{"member-alice", "POST", "/review/decide", http.StatusForbidden},
		{"member-alice", "GET", "/security", http.StatusForbidden},
		{"reviewer-rita", "GET", "/review", http.StatusOK},
		{"reviewer-rita", "GET", "/security", http.StatusForbidden},
		{"reviewer-rita", "POST", "/security/unfreeze", http.StatusForbidden},
		{"reviewer-rita", "POST", "/upload", http.StatusForbidden},
		{"reviewer-rita", "GET", "/member", http.StatusForbidden},
		{"auditor-ada", "GET", "/security", http.StatusOK},
		{"auditor-ada", "GET", "/review", http.StatusForbidden},
		{"auditor-ada", "POST", "/review/decide", http.StatusForbidden},
		{"auditor-ada", "GET", "/member", http.StatusForbidden},
		{"auditor-ada", "GET", "/nowhere", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tc.who, tc.method, tc.path), func(t *testing.T) {
			u := users[tc.who]
			req, _ := http.NewRequest(tc.method, te.srv.URL+tc.path, strings.NewReader(""))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r := u.do(req)
			if r.status != tc.status {
				t.Errorf("status %d, want %d", r.status, tc.status)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} {
				if r.header.Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
		})
	}
	t.Run("cross-origin POST", func(t *testing.T) {
		req, _ := http.NewRequest("POST", te.srv.URL+"/review/decide", strings.NewReader("id=x&outcome=approve"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if r := users["reviewer-rita"].do(req); r.status != http.StatusForbidden {
			t.Errorf("status %d, want 403", r.status)
		}
	})
	t.Run("unknown account", func(t *testing.T) {
		if r := te.anonymous().postForm("/login", url.Values{"account": {"admin"}}); r.status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.status)
		}
	})
	t.Run("signed out", func(t *testing.T) {
		u := te.login("reviewer-raj")
		u.postForm("/logout", nil)
		if r := u.get("/review"); r.status != http.StatusSeeOther {
			t.Errorf("after sign-out: status %d, want 303", r.status)
		}
	})
}

// TestDecisionValidation: bad decisions change nothing; a decision is taken
// once; a rejection deletes the image too.
func TestDecisionValidation(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	rita, link, id := te.queueOne("member-bob", licencePNG(t, 4))
	today := te.clock.Now()
	under18 := today.AddDate(-18, 0, 1).Format(time.DateOnly)
	exactly18 := today.AddDate(-18, 0, 0).Format(time.DateOnly)
	tests := []struct {
		name   string
		form   url.Values
		status int
	}{
		{"no outcome", url.Values{"id": {id}, "birthdate": {"1990-01-01"}}, http.StatusBadRequest},
		{"odd outcome", url.Values{"id": {id}, "outcome": {"maybe"}}, http.StatusBadRequest},
		{"approve without birth date", url.Values{"id": {id}, "outcome": {"approve"}}, http.StatusUnprocessableEntity},
		{"approve bad date", url.Values{"id": {id}, "outcome": {"approve"}, "birthdate": {"01/02/1990"}}, http.StatusUnprocessableEntity},
		{"approve future date", url.Values{"id": {id}, "outcome": {"approve"}, "birthdate": {today.AddDate(0, 0, 2).Format(time.DateOnly)}}, http.StatusUnprocessableEntity},
		{"approve under 18", url.Values{"id": {id}, "outcome": {"approve"}, "birthdate": {under18}}, http.StatusUnprocessableEntity},
		{"unknown document", url.Values{"id": {"0123456789abcdef0123456789abcdef"}, "outcome": {"reject"}}, http.StatusConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := rita.postForm("/review/decide", tc.form); r.status != tc.status {
				t.Errorf("status %d, want %d", r.status, tc.status)
			}
			if _, ok := te.app.state.lookup(id); !ok {
				t.Fatalf("the document is no longer pending")
			}
		})
	}
	if age(mustDate(t, exactly18), today) != 18 || age(mustDate(t, under18), today) != 17 {
		t.Errorf("age arithmetic is off")
	}
	// Deciding without having opened the document is refused, and the
	// document stays in the queue.
	if r := rita.postForm("/review/decide", url.Values{"id": {id}, "outcome": {"reject"}}); r.status != http.StatusForbidden {
		t.Fatalf("reject without opening the document: status %d, want 403", r.status)
	}
	if _, ok := te.app.state.lookup(id); !ok {
		t.Fatal("a refused decision took the document out of the queue")
	}
	if r := rita.get(link); r.status != http.StatusOK {
		t.Fatalf("opening the document: status %d", r.status)
	}
	if r := rita.postForm("/review/decide", url.Values{"id": {id}, "outcome": {"reject"}}); r.status != http.StatusSeeOther {
		t.Fatalf("reject: status %d", r.status)
	}
	if _, err := te.v.Grant(context.Background(), id, vault.Access{Principal: "reviewer-rita", Purpose: purpose}); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Grant after rejection: %v, want ErrNotFound", err)
	}
	if r := te.login("reviewer-raj").postForm("/review/decide", url.Values{"id": {id}, "outcome": {"approve"}, "birthdate": {"1980-01-01"}}); r.status != http.StatusConflict {
		t.Errorf("second decision: status %d, want 409", r.status)
	}
	if d, _ := te.app.state.decisionOf("member-bob"); d.Outcome != outcomeRejected || d.Reviewer != "reviewer-rita" {
		t.Errorf("decision = %+v", d)
	}
}

func mustDate(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExpiry: an undecided document goes at the 72-hour deadline: refused
// at once, deleted by the sweeper, and the member is told.
func TestExpiry(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	te.queueOne("member-alice", licencePNG(t, 5))
	te.clock.Advance(72*time.Hour - time.Minute)
	rita := te.login("reviewer-rita") // the session expired meanwhile
	if urls, _, _ := rita.reviewQueue(); len(urls) != 1 {
		t.Fatalf("queue a minute before the deadline: %d", len(urls))
	}
	te.clock.Advance(2 * time.Minute)
	rita = te.login("reviewer-rita") // the session expired meanwhile
	if urls, _, _ := rita.reviewQueue(); len(urls) != 0 {
		t.Fatalf("queue after the deadline: %d", len(urls))
	}
	rep, err := te.v.Admin().Sweep(context.Background(), vault.Actor{Principal: "test-sweeper"})
	if err != nil || rep.Expired != 1 {
		t.Fatalf("Sweep: %+v, %v", rep, err)
	}
	if n := te.countObjects(); n != 0 {
		t.Errorf("%d documents after the sweep", n)
	}
	if r := te.login("member-alice").get("/member"); !strings.Contains(r.body, "Expired") {
		t.Errorf("member page does not say expired")
	}
}
