package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/memstore"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
)

// fuzzBoundary is the boundary of the seed forms.
const fuzzBoundary = "agegatefuzzboundary"

// seedForm is a well-formed upload with the given image and declared type.
func seedForm(kind, ctype string, img []byte) []byte {
	var b bytes.Buffer
	b.WriteString("--" + fuzzBoundary + "\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n" + kind + "\r\n")
	b.WriteString("--" + fuzzBoundary + "\r\nContent-Disposition: form-data; name=\"document\"; filename=\"x\"\r\nContent-Type: " + ctype + "\r\n\r\n")
	b.Write(img)
	b.WriteString("\r\n--" + fuzzBoundary + "--\r\n")
	return b.Bytes()
}

// FuzzUpload feeds arbitrary bodies and content types to the upload
// handler. Whatever arrives: no panic, one of the documented statuses, and
// never a stored document that is not pending (nothing half-kept).
func FuzzUpload(f *testing.F) {
	small := licencePNG(f, 7)
	ct := "multipart/form-data; boundary=" + fuzzBoundary
	f.Add(seedForm("passport", "image/png", small), ct)
	f.Add(seedForm("passport", "image/jpeg", small), ct)
	f.Add(seedForm("national-id-back", "image/png", small), ct)
	f.Add(seedForm("passport", "image/png", []byte("GIF89a....")), ct)
	f.Add(seedForm("passport", "image/png", small)[:200], ct)
	f.Add(seedForm("passport", "image/png", pngLike(5000, 1)), ct) // over the fuzz app's limit
	f.Add([]byte("garbage"), ct)
	f.Add(seedForm("passport", "image/png", small), "multipart/form-data")
	f.Add([]byte("a=b"), "application/x-www-form-urlencoded")

	dir := f.TempDir()
	kek, err := kms.CreateLocal(filepath.Join(dir, "kek"), []byte("fuzz"), cheapKDF)
	if err != nil {
		f.Fatal(err)
	}
	st := memstore.New()
	v, err := vault.Open(context.Background(), vault.Config{Store: st, KEK: kek, Storage: vault.StorageConfig{MaxSize: 4096}})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close(context.Background())
	app, err := New(v, st, Options{MaxUpload: 4096})
	if err != nil {
		f.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/login", strings.NewReader("account=member-alice"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	login := httptest.NewRecorder()
	app.ServeHTTP(login, req)
	cookie := login.Result().Cookies()
	if len(cookie) != 1 {
		f.Fatalf("%d cookies from sign-in, want 1", len(cookie))
	}
	count := func() int {
		n := 0
		for _, err := range st.List(context.Background(), "keys/") {
			if err != nil {
				f.Fatal(err)
			}
			n++
		}
		return n
	}

	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		req := httptest.NewRequest("POST", "/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.AddCookie(cookie[0])
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusSeeOther, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if got, want := count(), len(app.state.pending()); got != want {
			t.Fatalf("%d documents stored for %d pending submissions", got, want)
		}
	})
}

// FuzzLoadState parses arbitrary state files: no panic, and what parses
// encodes and parses back to the same data.
func FuzzLoadState(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzLoadState.
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseState(b)
		if err != nil {
			return
		}
		s := &state{d: d} // no path: nothing written
		now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
		for _, p := range s.pending() {
			s.status(p.Member, now)
			s.lookup(p.ID)
		}
		s.liveCanaries(now)
		out, err := json.Marshal(s.d)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		d2, err := parseState(out)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !reflect.DeepEqual(normalize(d2), normalize(d)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", d2, d)
		}
	})
}

// normalize drops what JSON cannot carry through a round trip unchanged
// (monotonic clock readings, locations, nil versus empty).
func normalize(d stateData) stateData {
	out := stateData{Decisions: map[string]decision{}}
	for _, p := range d.Pending {
		p.Submitted, p.Expires = p.Submitted.UTC(), p.Expires.UTC()
		out.Pending = append(out.Pending, p)
	}
	for k, v := range d.Decisions {
		v.Decided = v.Decided.UTC()
		out.Decisions[k] = v
	}
	for _, c := range d.Canaries {
		c.Expires = c.Expires.UTC()
		out.Canaries = append(out.Canaries, c)
	}
	return out
}
