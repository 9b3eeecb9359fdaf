package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"sync"
	"time"
)

// All authentication and authorisation of the app is in this file: the demo
// accounts, the session store, and authorize, which every route goes through
// (see routes in app.go). Replace this file with your real sign-in.

// role is what an account may do.
type role string

const (
	roleMember   role = "member"   // uploads their own ID image
	roleReviewer role = "reviewer" // sees the queue, decides
	roleAuditor  role = "auditor"  // sees the security page
)

// account is a DEMO account: fixed, listed on the sign-in page, no password.
type account struct {
	ID   string // the principal: recorded in the audit log for staff, hashed for members
	Name string
	Role role
}

// demoAccounts are the only accounts. DEMO ONLY: anyone can sign in as any.
var demoAccounts = []account{
	{ID: "member-alice", Name: "Alice", Role: roleMember},
	{ID: "member-bob", Name: "Bob", Role: roleMember},
	{ID: "reviewer-rita", Name: "Rita", Role: roleReviewer},
	{ID: "reviewer-raj", Name: "Raj", Role: roleReviewer},
	{ID: "auditor-ada", Name: "Ada", Role: roleAuditor},
}

func accountByID(id string) (account, bool) {
	for _, a := range demoAccounts {
		if a.ID == id {
			return a, true
		}
	}
	return account{}, false
}

// home is where an account lands after signing in.
func (a account) home() string {
	switch a.Role {
	case roleMember:
		return "/member"
	case roleReviewer:
		return "/review"
	default:
		return "/security"
	}
}

const (
	sessionCookie = "agegate_session"
	sessionTTL    = 8 * time.Hour
)

// sessions maps random session IDs (the cookie) to accounts, in memory.
// It is safe for concurrent use.
type sessions struct {
	mu  sync.Mutex
	m   map[string]session
	now func() time.Time
}

type session struct {
	account string
	expires time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{m: map[string]session{}, now: now}
}

// create starts a session for acct and sets its cookie.
func (s *sessions) create(w http.ResponseWriter, acct account) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := hex.EncodeToString(b[:])
	s.mu.Lock()
	now := s.now()
	for k, v := range s.m { // drop expired sessions; a demo has few
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = session{account: acct.ID, expires: now.Add(sessionTTL)}
	s.mu.Unlock()
	// HttpOnly: no script reads it; SameSite=Strict: no other site's form
	// or link carries it. Not Secure because the demo serves plain http on
	// loopback; behind TLS set Secure too.
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	return nil
}

// forget ends the request's session, if any, on the server side.
func (s *sessions) forget(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
}

// end ends the request's session, if any, and clears the cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request) {
	s.forget(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// lookup returns the account of the request's session.
func (s *sessions) lookup(r *http.Request) (account, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return account{}, false
	}
	s.mu.Lock()
	sess, ok := s.m[c.Value]
	s.mu.Unlock()
	if !ok || s.now().After(sess.expires) {
		return account{}, false
	}
	return accountByID(sess.account)
}

type ctxKey struct{}

// accountFrom returns the account authorize put in the request context.
func accountFrom(ctx context.Context) account {
	a, _ := ctx.Value(ctxKey{}).(account)
	return a
}

// authorize lets a request through only for a signed-in account with one of
// roles (any role when roles is empty). A request without a session is sent
// to the sign-in page (GET) or refused 401; a signed-in account without the
// role gets 403.
func (a *App) authorize(roles []role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acct, ok := a.sessions.lookup(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			a.fail(w, r, http.StatusUnauthorized, "Please sign in first.")
			return
		}
		if len(roles) > 0 && !slices.Contains(roles, acct.Role) {
			a.fail(w, r, http.StatusForbidden, "This page is not for your account.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, acct)))
	})
}

// imagePrincipal is the vault Handler's Principal: the signed-in account,
// whoever it is. The vault then checks that it is the account the token
// was granted to, so a link opened by anyone else shows nothing.
func (a *App) imagePrincipal(r *http.Request) (string, error) {
	acct, ok := a.sessions.lookup(r)
	if !ok {
		return "", errNotSignedIn
	}
	return acct.ID, nil
}
