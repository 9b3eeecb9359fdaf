package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"net/http"
	"time"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var errNotSignedIn = errors.New("agegate: not signed in")

// Options configures the app. Zero values are the defaults.
type Options struct {
	// MaxUpload is the largest accepted image in bytes (default 10 MiB).
	// Keep it at or below the vault's Config.Storage.MaxSize.
	MaxUpload int64
	// StatePath is the JSON file of pending submissions, decisions and
	// canaries ("" keeps them in memory only). It never holds image data.
	StatePath string
	// ImageTTL is how long a review link is valid (default 60 s).
	ImageTTL time.Duration
	// QueueLimit is how many documents the review page shows at once
	// (default 20); each shown document costs one grant of the reviewer's
	// quota.
	QueueLimit int
	// Alerts collects the vault's OnAlert callbacks (optional).
	Alerts *alertLog
	// Logger receives operational messages: never a token, an image or a
	// member ID (default: discard).
	Logger *log.Logger
	// Metrics, if set, serves GET /metrics (the Prometheus exposition).
	Metrics http.Handler
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// App is the age-verification web app. It is an http.Handler, safe for
// concurrent use.
type App struct {
	v        *vault.Vault
	st       store.Store
	opts     Options
	sessions *sessions
	state    *state
	alerts   *alertLog
	pages    map[string]*template.Template
	handler  http.Handler
}

// New builds the app on an open vault and the store it was opened on (read
// by the security page for audit.Scan and audit.Verify).
func New(v *vault.Vault, st store.Store, opts Options) (*App, error) {
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = 10 << 20
	}
	if opts.ImageTTL <= 0 {
		opts.ImageTTL = vault.DefaultGrantTTL
	}
	if opts.QueueLimit <= 0 {
		opts.QueueLimit = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Alerts == nil {
		opts.Alerts = newAlertLog(200)
	}
	stt, err := loadState(opts.StatePath)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	a := &App{v: v, st: st, opts: opts, sessions: newSessions(opts.Now), state: stt, alerts: opts.Alerts, pages: pages}
	a.handler = a.routes()
	return a, nil
}

// routes is the route table. Every route names the roles it admits; the
// check itself is authorize (auth.go).
func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		roles   []role // nil: public
		h       http.HandlerFunc
	}{
		{"GET /{$}", nil, a.handleIndex},
		{"GET /login", nil, a.handleLoginPage},
		{"POST /login", nil, a.handleLogin},
		{"POST /logout", nil, a.handleLogout},
		{"GET /member", []role{roleMember}, a.handleMember},
		{"POST /upload", []role{roleMember}, a.handleUpload},
		{"GET /review", []role{roleReviewer}, a.handleQueue},
		{"GET /review/doc/{id}", []role{roleReviewer}, a.handleReviewOne},
		{"POST /review/decide", []role{roleReviewer}, a.handleDecide},
		{"GET /security", []role{roleAuditor}, a.handleSecurity},
		{"POST /security/unfreeze", []role{roleAuditor}, a.handleUnfreeze},
	} {
		if r.roles == nil {
			mux.Handle(r.pattern, r.h)
		} else {
			mux.Handle(r.pattern, a.authorize(r.roles, r.h))
		}
	}
	// The images: the vault's own handler redeems the token in the path for
	// the signed-in account (imagePrincipal). Any refusal is one uniform 404.
	mux.Handle("GET /img/", http.StripPrefix("/img", a.v.Handler(vault.HandlerOptions{
		Principal: a.imagePrincipal,
		OnError: func(r *http.Request, err error) {
			a.logf("image request refused: %v", err) // the error never holds the token
		},
	})))
	if a.opts.Metrics != nil {
		// Public like any scrape target on loopback: counts only, no
		// identity, token or document. In production serve it on an
		// internal listener.
		mux.Handle("GET /metrics", a.opts.Metrics)
	}
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static", http.FileServerFS(static)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, http.StatusNotFound, "No such page.")
	})
	// Cross-origin POSTs (a form on another site) are refused before any
	// handler runs; SameSite=Strict cookies are the second layer.
	return http.NewCrossOriginProtection().Handler(mux)
}

// ServeHTTP implements http.Handler.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages hold personal data and single-use tokens: never cache them,
	// never send them as a Referer, never frame them. No script at all.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	a.handler.ServeHTTP(w, r)
}

func (a *App) logf(format string, args ...any) {
	if a.opts.Logger != nil {
		a.opts.Logger.Printf(format, args...)
	}
}

func (a *App) now() time.Time { return a.opts.Now() }

// page is what every template gets.
type page struct {
	Title   string
	Account account
	Data    any
}

// render executes a page template into a buffer first, so a template error
// becomes a clean 500 rather than half a page.
func (a *App) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	t, ok := a.pages[name]
	if !ok {
		panic("agegate: no template " + name)
	}
	acct, _ := a.sessions.lookup(r)
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", page{Title: title, Account: acct, Data: data}); err != nil {
		a.logf("render %s: %v", name, err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// errorPage is the data of the error template.
type errorPage struct {
	Status  int
	Text    string
	Message string
}

// fail renders an error page with status.
func (a *App) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	a.render(w, r, status, "error", fmt.Sprintf("%d %s", status, http.StatusText(status)),
		errorPage{Status: status, Text: http.StatusText(status), Message: msg})
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"short": func(s string) string {
			if len(s) > 8 {
				return s[:8] + "…"
			}
			return s
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04:05")
		},
		"kindLabel": kindLabel,
		"bytes":     byteSize,
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "member", "review", "security", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

func (a *App) handleIndex(w http.ResponseWriter, r *http.Request) {
	if acct, ok := a.sessions.lookup(r); ok {
		http.Redirect(w, r, acct.home(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (a *App) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, "login", "Sign in (demo accounts)", demoAccounts)
}

func (a *App) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	acct, ok := accountByID(r.PostFormValue("account"))
	if !ok {
		a.fail(w, r, http.StatusBadRequest, "No such demo account.")
		return
	}
	a.sessions.forget(r) // a new session ID at every sign-in: no fixation
	if err := a.sessions.create(w, acct); err != nil {
		a.fail(w, r, http.StatusInternalServerError, "Could not start a session.")
		return
	}
	http.Redirect(w, r, acct.home(), http.StatusSeeOther)
}

func (a *App) handleLogout(w http.ResponseWriter, r *http.Request) {
	a.sessions.end(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
