package vault

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HandlerOptions configures Handler.
type HandlerOptions struct {
	// Principal authenticates the request and returns who is asking (your
	// session or mTLS identity). Required. An error refuses the request.
	Principal func(*http.Request) (string, error)
	// OnError, if set, is told why a request was refused (for metrics or
	// logs). The error never contains the token.
	OnError func(r *http.Request, err error)
	// RefusalFloor is the least time any refusal takes (default 25 ms;
	// negative: none). Refusal paths do different work — a forged token
	// costs no I/O, a replay costs a write — and the floor hides that
	// difference from a prober timing the answers. Served requests are
	// not delayed.
	RefusalFloor time.Duration
}

// DefaultRefusalFloor is HandlerOptions.RefusalFloor's default.
const DefaultRefusalFloor = 25 * time.Millisecond

// notFoundBody is the one answer to every refusal.
const notFoundBody = "not found\n"

// Handler serves redemption over HTTP: GET /{token} streams the document
// once to the principal it was granted to. Mount it under a prefix with
// http.StripPrefix.
//
// Every refusal — garbled, forged, expired, replayed or someone else's
// token, absent or expired document, an audit log that cannot be written —
// is the same 404 with the same body, so refusals teach a prober nothing;
// the precise reason is in the audit log. HEAD and other methods get 405
// and never spend a token. Responses carry Cache-Control: no-store,
// Referrer-Policy: no-referrer, X-Content-Type-Options: nosniff, a
// Content-Security-Policy of default-src 'none', and a Content-Type from the
// allow-list only.
func (v *Vault) Handler(opts HandlerOptions) http.Handler {
	if opts.Principal == nil {
		panic("vault: HandlerOptions.Principal is required")
	}
	floor := opts.RefusalFloor
	if floor == 0 {
		floor = DefaultRefusalFloor
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		refuse := func(err error) {
			if opts.OnError != nil && err != nil {
				opts.OnError(r, err)
			}
			if wait := floor - time.Since(start); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-r.Context().Done():
				}
				t.Stop()
			}
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Content-Length", strconv.Itoa(len(notFoundBody)))
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, notFoundBody)
		}
		if r.Method != http.MethodGet {
			h.Set("Allow", "GET")
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		tok := strings.TrimPrefix(r.URL.Path, "/")
		if tok == "" || strings.Contains(tok, "/") {
			refuse(ErrTokenInvalid)
			return
		}
		principal, err := opts.Principal(r)
		if err != nil {
			refuse(errors.New("vault: handler: unauthenticated request"))
			return
		}
		rc, info, err := v.Redeem(r.Context(), tok, Requester{Principal: principal, RemoteAddr: r.RemoteAddr})
		if err != nil {
			refuse(err)
			return
		}
		defer rc.Close()
		if !allowedTypes[info.ContentType] {
			refuse(ErrUnsupportedContent)
			return
		}
		h.Set("Content-Type", info.ContentType)
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		if info.ContentType == TypePDF {
			h.Set("Content-Disposition", "attachment")
		} else {
			h.Set("Content-Disposition", "inline")
		}
		w.WriteHeader(http.StatusOK)
		if _, err := io.Copy(w, rc); err != nil {
			if opts.OnError != nil {
				opts.OnError(r, err)
			}
			// The status is gone; abort the connection so the client sees a
			// broken transfer, never a complete-looking partial image.
			panic(http.ErrAbortHandler)
		}
	})
}
