package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/idvault/idvault/kms"
	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/fsstore"
	"github.com/idvault/idvault/vault/vaulttest"
)

// openExample opens a vault on a fresh directory; cleanup removes it.
func openExample(cfg vault.Config) (v *vault.Vault, cleanup func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "idvault-example")
	if err != nil {
		log.Fatal(err)
	}
	if cfg.Store == nil {
		// An example that injects a clock gives it to the store too: the
		// vault refuses anything irreversible while its clock and the
		// store's disagree.
		if cfg.Store, err = fsstore.OpenWithOptions(filepath.Join(dir, "store"), fsstore.Options{Now: cfg.Now}); err != nil {
			log.Fatal(err)
		}
	}
	if cfg.KEK == nil {
		if cfg.KEK, err = kms.CreateLocal(filepath.Join(dir, "kek"), []byte("example passphrase"), kms.LocalOptions{}); err != nil {
			log.Fatal(err)
		}
	}
	if v, err = vault.Open(ctx, cfg); err != nil {
		log.Fatal(err)
	}
	return v, func() { v.Close(ctx); os.RemoveAll(dir) }
}

// sessions is a minimal server-side session table: a random cookie value
// maps to the signed-in account. Use your framework's sessions instead.
type sessions struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *sessions) signIn(w http.ResponseWriter, account string) {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.m[id] = account
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// principal is HandlerOptions.Principal: no valid session, no principal.
func (s *sessions) principal(r *http.Request) (string, error) {
	c, err := r.Cookie("session")
	if err != nil {
		return "", errors.New("not signed in")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	account, ok := s.m[c.Value]
	if !ok {
		return "", errors.New("unknown session")
	}
	return account, nil
}

// The handler mounted under /img/ in an application's mux, behind the
// application's own session check: the token alone is not enough, the
// request must come from the reviewer it was granted to.
func ExampleVault_Handler() {
	ctx := context.Background()
	v, cleanup := openExample(vault.Config{})
	defer cleanup()
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
	if err != nil {
		log.Fatal(err)
	}

	s := &sessions{m: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/{account}", func(w http.ResponseWriter, r *http.Request) {
		s.signIn(w, r.PathValue("account")) // your real sign-in here
	})
	mux.HandleFunc("GET /review/{id}", func(w http.ResponseWriter, r *http.Request) {
		who, err := s.principal(r)
		if err != nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		g, err := v.Grant(r.Context(), r.PathValue("id"), vault.Access{Principal: who, Purpose: "age-check"})
		if err != nil {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `<img src="/img/%s">`, g.Token)
	})
	mux.Handle("GET /img/", http.StripPrefix("/img", v.Handler(vault.HandlerOptions{Principal: s.principal})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	reviewer := &http.Client{Jar: jar}
	if _, err := reviewer.Post(srv.URL+"/login/reviewer-7", "", nil); err != nil {
		log.Fatal(err)
	}
	resp, err := reviewer.Get(srv.URL + "/review/" + info.ID)
	if err != nil {
		log.Fatal(err)
	}
	var page bytes.Buffer
	page.ReadFrom(resp.Body)
	resp.Body.Close()
	src := strings.TrimSuffix(strings.TrimPrefix(page.String(), `<img src="`), `">`)

	// Someone without the reviewer's session holding the link gets nothing
	// (and that refusal does not spend the token); the reviewer gets the
	// image once.
	for _, c := range []*http.Client{http.DefaultClient, reviewer, reviewer} {
		resp, err := c.Get(srv.URL + src)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 404
	// 200
	// 404
}

// Sweep deletes what is past its deadline; run it from cron, or let
// Config.Retention.SweepEvery run it in the background.
func ExampleAdmin_Sweep() {
	ctx := context.Background()
	clock := newExampleClock(time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)) // leave Now nil in production
	v, cleanup := openExample(vault.Config{Now: clock.Now, Retention: vault.RetentionConfig{Period: 24 * time.Hour}})
	defer cleanup()
	for range 3 {
		if _, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"}); err != nil {
			log.Fatal(err)
		}
	}
	clock.Advance(25 * time.Hour)
	rep, err := v.Admin().Sweep(ctx, vault.Actor{Principal: "cron:sweep", Reason: "nightly"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("expired:", rep.Expired)
	// Output: expired: 3
}

// With Config.Retention.SweepEvery the vault sweeps in the background until Close;
// failures go to OnSweepError, each sweep to the audit log (and to
// Config.Observability.Logger and the metrics, when set).
func ExampleConfig_sweepEvery() {
	v, cleanup := openExample(vault.Config{
		Retention: vault.RetentionConfig{
			SweepEvery:     10 * time.Minute,
			SweepPrincipal: "svc:idvault-sweeper",
			OnSweepError:   func(err error) { log.Print("sweep: ", err) },
		},
	})
	defer cleanup()
	fmt.Println("sweeping every 10m as svc:idvault-sweeper; vault", len(v.ID()) == 32)
	// Output: sweeping every 10m as svc:idvault-sweeper; vault true
}

// EraseSubject is the call to make when a member leaves or asks for
// erasure; a document under legal hold is kept and reported.
func ExampleAdmin_EraseSubject() {
	ctx := context.Background()
	v, cleanup := openExample(vault.Config{})
	defer cleanup()
	var last vault.Info
	for range 3 {
		info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
		if err != nil {
			log.Fatal(err)
		}
		last = info
	}
	legal := vault.Actor{Principal: "legal-1", Reason: "case 2026-114"}
	if err := v.Admin().Hold(ctx, last.ID, legal); err != nil {
		log.Fatal(err)
	}
	n, err := v.Admin().EraseSubject(ctx, "member-42", vault.Actor{Principal: "support-3", Reason: "member left"})
	fmt.Println("erased:", n, "kept under hold:", errors.Is(err, vault.ErrHeld))
	// Output: erased: 2 kept under hold: true
}

// Hold suspends a document's deletion (Sweep, Delete and EraseSubject
// keep it) until Release; both are audited with who and why.
func ExampleAdmin_Hold() {
	ctx := context.Background()
	clock := newExampleClock(time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC))
	v, cleanup := openExample(vault.Config{Now: clock.Now})
	defer cleanup()
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
	if err != nil {
		log.Fatal(err)
	}
	legal := vault.Actor{Principal: "legal-1", Reason: "case 2026-114"}
	if err := v.Admin().Hold(ctx, info.ID, legal); err != nil {
		log.Fatal(err)
	}
	clock.Advance(vault.DefaultRetention + time.Hour)
	cron := vault.Actor{Principal: "cron:sweep"}
	rep, _ := v.Admin().Sweep(ctx, cron)
	fmt.Println("expired:", rep.Expired, "held:", rep.Held)

	if err := v.Admin().Release(ctx, info.ID, legal); err != nil {
		log.Fatal(err)
	}
	rep, _ = v.Admin().Sweep(ctx, cron)
	fmt.Println("expired:", rep.Expired, "held:", rep.Held)
	// Output:
	// expired: 0 held: 1
	// expired: 1 held: 0
}

// QuotaFor gives each class of principal its own quota; a Limiter kept in
// the shared store makes the counts hold across every instance, so an
// attacker spreading requests over instances still gets one quota.
func ExampleConfig_quotaFor() {
	ctx := context.Background()
	st := vaulttest.NewStore() // in production: s3store, shared by every instance
	cfg := vault.Config{
		Store: st,
		KEK:   vaulttest.NewKEK(),
		Detection: vault.DetectionConfig{
			Limiter: vault.NewStoreLimiter(st), // one count for all instances sharing st
			QuotaFor: func(principal string) vault.Quota {
				if strings.HasPrefix(principal, "batch:") {
					return vault.Quota{Documents: 5000, Redemptions: 5000, Burst: 5000}
				}
				return vault.Quota{Documents: 2} // reviewers: the defaults, but 2 documents an hour
			},
		},
	}
	a, err := vault.Open(ctx, cfg) // two instances, one store
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := vault.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close(ctx)

	for i, inst := range []*vault.Vault{a, b, a} {
		info, err := inst.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42"})
		if err != nil {
			log.Fatal(err)
		}
		_, err = inst.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
		fmt.Println("document", i+1, "quota exceeded:", errors.Is(err, vault.ErrQuotaExceeded))
	}
	// Output:
	// document 1 quota exceeded: false
	// document 2 quota exceeded: false
	// document 3 quota exceeded: true
}

// The key-encryption key from a local keyset file: created once, then
// opened with its passphrase on every start. In production keep the
// passphrase in a secret manager, or use a cloud KMS (kms.NewTink).
func Example_kek() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "idvault-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek.keyset")
	passphrase := []byte("from your secret manager")

	if _, err := kms.CreateLocal(path, passphrase, kms.LocalOptions{}); err != nil { // first deployment only
		log.Fatal(err)
	}
	kek, err := kms.OpenLocal(path, passphrase)
	if err != nil {
		log.Fatal(err)
	}
	st, err := fsstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, KEK: kek})
	if err != nil {
		log.Fatal(err)
	}
	v.Close(ctx)

	// Another KEK cannot open this vault.
	other, _ := kms.CreateLocal(filepath.Join(dir, "other.keyset"), passphrase, kms.LocalOptions{})
	_, err = vault.Open(ctx, vault.Config{Store: st, KEK: other})
	fmt.Println("wrong KEK refused:", errors.Is(err, vault.ErrWrongKEK))
	// Output: wrong KEK refused: true
}

// ListSubject answers a member's subject-access request. Check first that
// the caller may see this member's data: the vault audits the call but
// does not authorise it.
func ExampleAdmin_ListSubject() {
	ctx := context.Background()
	clock := newExampleClock(time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC))
	v, cleanup := openExample(vault.Config{
		Now: clock.Now,
		Access: vault.AccessConfig{
			RoleOf: func(principal string) string {
				role, _, _ := strings.Cut(principal, "-") // "reviewer-7" -> "reviewer"
				return role
			},
		},
	})
	defer cleanup()
	info, err := v.Put(ctx, vault.Document{Body: bytes.NewReader(scan), Size: int64(len(scan)), Subject: "member-42", Kind: "passport"})
	if err != nil {
		log.Fatal(err)
	}
	g, err := v.Grant(ctx, info.ID, vault.Access{Principal: "reviewer-7", Purpose: "age-check"})
	if err != nil {
		log.Fatal(err)
	}
	rc, _, err := v.Redeem(ctx, g.Token, vault.Requester{Principal: "reviewer-7"})
	if err != nil {
		log.Fatal(err)
	}
	rc.Close()

	docs, err := v.Admin().ListSubject(ctx, "member-42", vault.Actor{Principal: "member-42", Reason: "self-service request"})
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range docs {
		fmt.Println(d.Kind, d.Created.Format(time.DateTime), "until", d.Expires.Format(time.DateTime), "views:", d.Views)
	}
	// Output: passport 2026-01-02 09:00:00 until 2026-01-05 09:00:00 views: map[reviewer:1]
}

// newExampleClock returns a manual clock at t (vaulttest.Clock) that the
// vault's background work may read while the example moves it.
func newExampleClock(t time.Time) *vaulttest.Clock {
	c := vaulttest.NewClock()
	c.Set(t)
	return c
}
