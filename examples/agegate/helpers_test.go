package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"log"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/internal/miniotest"
	"github.com/idvault/idvault/internal/testenv"
	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
	"github.com/idvault/idvault/vault/vaulttest"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

// cheapKDF keeps keyset creation fast in tests; the app's default is the
// RFC 9106 second recommendation.
var cheapKDF = kms.LocalOptions{Time: 1, MemoryKiB: 1024, Threads: 1}

// fakeClock is an injected clock, safe for concurrent use.
type fakeClock = vaulttest.Clock

func newFakeClock() *fakeClock {
	c := vaulttest.NewClock()
	c.Set(time.Now().Truncate(time.Second))
	return c
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer = testenv.Buffer

// testEnv is the app as main builds it (setup), served by httptest on
// 127.0.0.1.
type testEnv struct {
	t     testing.TB
	env   *environment
	app   *App
	v     *vault.Vault
	st    store.Store
	srv   *httptest.Server
	clock *fakeClock
	logs  *syncBuffer
	dir   string
}

type envOptions struct {
	maxUpload int64
	realClock bool
	cfg       func(*config)
}

func newTestEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	if o.maxUpload == 0 {
		o.maxUpload = 1 << 20
	}
	te := &testEnv{t: t, clock: newFakeClock(), logs: &syncBuffer{}, dir: t.TempDir()}
	cfg := config{
		Dir: te.dir, MaxUpload: o.maxUpload, Freeze: true,
		Passphrase: []byte("test passphrase"), KDF: cheapKDF, Now: te.clock.Now,
	}
	if o.realClock {
		cfg.Now = nil
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	env, err := setup(context.Background(), cfg, log.New(te.logs, "", 0))
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	te.env, te.app, te.v, te.st = env, env.App, env.Vault, env.Store
	te.srv = httptest.NewServer(env.App)
	t.Cleanup(func() {
		te.srv.Close()
		if err := env.Close(); err != nil && !errors.Is(err, vault.ErrClosed) {
			t.Errorf("close: %v", err)
		}
		// Nothing the app logged may hold a token or a member's ID.
		// (The log itself is not printed: it would repeat the leak.)
		for i, line := range strings.Split(te.logs.String(), "\n") {
			if strings.Contains(line, "idv1_") || strings.Contains(line, "member-") {
				t.Errorf("log line %d holds a token or a member ID", i+1)
			}
		}
	})
	return te
}

// user is an HTTP client signed in as one demo account. It does not follow
// redirects, so tests see every status.
type user struct {
	te *testEnv
	c  *http.Client
	id string
}

func (te *testEnv) anonymous() *user {
	jar, _ := cookiejar.New(nil)
	return &user{te: te, c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (te *testEnv) login(id string) *user {
	te.t.Helper()
	u := te.anonymous()
	resp := u.postForm("/login", url.Values{"account": {id}})
	if resp.status != http.StatusSeeOther {
		te.t.Fatalf("login %s: status %d", id, resp.status)
	}
	u.id = id
	return u
}

type response struct {
	status int
	header http.Header
	body   string
}

func (u *user) do(req *http.Request) response {
	u.te.t.Helper()
	path := req.URL.Path
	if strings.HasPrefix(path, "/img/") {
		path = "/img/REDACTED" // the token is a secret even in test output
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.te.t.Fatalf("%s %s: %v", req.Method, path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.te.t.Fatalf("%s %s: reading body: %v", req.Method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (u *user) get(path string) response {
	u.te.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u.te.srv.URL+path, nil)
	if err != nil {
		u.te.t.Fatal(err)
	}
	return u.do(req)
}

func (u *user) postForm(path string, v url.Values) response {
	u.te.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u.te.srv.URL+path, strings.NewReader(v.Encode()))
	if err != nil {
		u.te.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return u.do(req)
}

// formPart is one part of a multipart upload.
type formPart struct {
	name, filename, ctype string
	body                  io.Reader
}

// multipartBody writes parts as multipart/form-data.
func multipartBody(parts []formPart) ([]byte, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		cd := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			cd += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", cd)
		if p.ctype != "" {
			h.Set("Content-Type", p.ctype)
		}
		w, _ := mw.CreatePart(h)
		io.Copy(w, p.body)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func (u *user) uploadRaw(body io.Reader, ctype string) response {
	u.te.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u.te.srv.URL+"/upload", body)
	if err != nil {
		u.te.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	return u.do(req)
}

// upload sends img as a document of the given kind and declared type.
func (u *user) upload(img []byte, ctype string) response {
	u.te.t.Helper()
	body, ct := multipartBody([]formPart{
		{name: "kind", body: strings.NewReader("drivers-license")},
		{name: "document", filename: "licence.png", ctype: ctype, body: bytes.NewReader(img)},
	})
	return u.uploadRaw(bytes.NewReader(body), ct)
}

var imgURLPattern = regexp.MustCompile(`src="(/img/idv1_[A-Za-z0-9_-]+)"`)
var itemPattern = regexp.MustCompile(`id="item-([0-9a-f]{32})"`)

// reviewQueue loads /review and returns the image URLs and document IDs
// shown, in order.
func (u *user) reviewQueue() (urls, ids []string, page string) {
	u.te.t.Helper()
	r := u.get("/review")
	if r.status != http.StatusOK {
		u.te.t.Fatalf("GET /review as %s: status %d", u.id, r.status)
	}
	for _, m := range imgURLPattern.FindAllStringSubmatch(r.body, -1) {
		urls = append(urls, m[1])
	}
	for _, m := range itemPattern.FindAllStringSubmatch(r.body, -1) {
		ids = append(ids, m[1])
	}
	if len(urls) != len(ids) {
		u.te.t.Fatalf("review page: %d images for %d items", len(urls), len(ids))
	}
	return urls, ids, r.body
}

// queueOne uploads img (a PNG) as member, signs reviewer-rita in, and
// returns her with the image URL and document ID of the one document her
// queue shows; it fails the test when the queue shows any other number.
func (te *testEnv) queueOne(member string, img []byte) (rita *user, url, id string) {
	te.t.Helper()
	te.login(member).upload(img, "image/png")
	rita = te.login("reviewer-rita")
	urls, ids, _ := rita.reviewQueue()
	if len(urls) != 1 {
		te.t.Fatalf("queue shows %d documents, want 1", len(urls))
	}
	return rita, urls[0], ids[0]
}

// approve approves document id with birthdate as u, and fails the test
// unless the app answers with its redirect.
func (u *user) approve(id, birthdate string) {
	u.te.t.Helper()
	if r := u.postForm("/review/decide", url.Values{"id": {id}, "outcome": {"approve"}, "birthdate": {birthdate}}); r.status != http.StatusSeeOther {
		u.te.t.Fatalf("decide: status %d", r.status)
	}
}

// countObjects counts the documents in the store (key records).
func (te *testEnv) countObjects() int {
	te.t.Helper()
	n := 0
	for _, err := range te.env.KeyStore.List(context.Background(), "keys/") {
		if err != nil {
			te.t.Fatal(err)
		}
		n++
	}
	return n
}

// licencePNG draws an obviously fake ID card (no real person's data).
func licencePNG(t testing.TB, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewRGBA(image.Rect(0, 0, 428, 270))
	fill := func(x0, y0, x1, y1 int, c color.RGBA) {
		draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
	}
	fill(0, 0, 428, 270, color.RGBA{236, 240, 228, 255})
	fill(0, 0, 428, 44, color.RGBA{40, 90, 160, 255})
	fill(20, 64, 140, 224, color.RGBA{190, 190, 200, 255})
	fill(55, 95, 105, 150, color.RGBA{150, 150, 165, 255})
	for i := range 5 {
		fill(160, 70+i*26, 190+100+r.IntN(120), 80+i*26, color.RGBA{60, 60, 70, 255})
	}
	fill(0, 250, 428, 270, color.RGBA{200, 60, 60, 255}) // the SPECIMEN band
	// A few random pixels make every image distinct.
	for range 64 {
		img.Set(r.IntN(428), r.IntN(270), color.RGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngLike returns n bytes that start with the PNG signature (the vault
// checks magic bytes, not the whole image), random after that.
func pngLike(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

// streamingForm writes a one-image multipart form to a pipe as the body is
// generated, so that a test never holds a large upload in memory.
type streamingForm struct{ mw *multipart.Writer }

func newStreamingForm(w io.Writer) *streamingForm {
	return &streamingForm{mw: multipart.NewWriter(w)}
}

func (s *streamingForm) contentType() string { return s.mw.FormDataContentType() }

func (s *streamingForm) write(body func(io.Writer) error) error {
	if err := s.mw.WriteField("kind", "passport"); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="document"; filename="big.png"`)
	h.Set("Content-Type", "image/png")
	w, err := s.mw.CreatePart(h)
	if err != nil {
		return err
	}
	if err := body(w); err != nil {
		return err
	}
	return s.mw.Close()
}

// watchDir lists dir every millisecond until the returned func is called,
// which reports every name seen in it meanwhile.
func watchDir(dir string) (stop func() []string) {
	done := make(chan struct{})
	result := make(chan []string)
	go func() {
		seen := map[string]bool{}
		for {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				seen[e.Name()] = true
			}
			select {
			case <-done:
				var names []string
				for n := range seen {
					names = append(names, n)
				}
				result <- names
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() []string { close(done); return <-result }
}

// watchHeap samples the live heap every few milliseconds until the
// returned func is called, which reports the largest growth seen over the
// starting point.
func watchHeap() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
				peak = ms.HeapAlloc - base
			}
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}
