package vault

import (
	"cmp"
	"context"
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
	// negative: no floor at all). Refusal paths do different work — a
	// forged token costs no I/O, a replay costs two reads and a write — so
	// every refusal is answered the larger of RefusalFloor and
	// Vault.RefusalFloor after its turn (see MaxRefusalRate; without a
	// queue, its arrival). Vault.RefusalFloor follows the measured latency
	// of the slowest refusal path (110 % of its maximum over the last 256
	// such requests, at most MaxRefusalFloor): a slow or loaded store
	// raises the floor with it. Served requests are not delayed.
	RefusalFloor time.Duration
	// RequestTimeout bounds everything before the first byte of an answer
	// (token, store, KMS, audit): a request whose dependencies hang is
	// refused (404) by then (default 30 s). It does not bound the stream
	// after the first byte: the client's rate (WriteTimeout) does, and a
	// store that delivers nothing for 30 s mid-stream ends it.
	RequestTimeout time.Duration
	// WriteTimeout sets the slowest client served: 32 KiB per WriteTimeout
	// on average (default 10 s: about 3.2 KB/s). A client that has taken
	// less than that since its first byte, counting only the time spent
	// writing to it, with one WriteTimeout of grace, is disconnected,
	// which frees its stream and read-ahead. A client that reads at or
	// above the rate is never cut, however its kernel buffers fill and
	// drain (a write that finds the send buffer full waits until a third
	// of it has drained: seconds for a slow client, so a per-write limit
	// would cut it); one that stalls is cut once its average falls below
	// the rate, so no stream lasts longer than Size divided by the rate
	// plus WriteTimeout (as long as a client reading at exactly the rate).
	WriteTimeout time.Duration
	// MaxRefusalRate bounds how many refusals (404, and 405 for other
	// methods) the handler answers per second, with bursts of
	// RefusalBurst (default DefaultMaxRefusalRate; negative: no bound).
	// Every request takes a turn when it arrives; a served one gives it
	// back and never waits. A refusal is answered in its turn (first
	// come, first answered, each by its RequestTimeout at the latest), and
	// a token refused on its face (forged, expired, someone else's) waits
	// for its turn before any work. A
	// flood of bogus tokens over many connections, principals or
	// addresses is therefore answered, and costs detector counts and
	// refusal records, at this rate: its clients send no faster, and the
	// CPU and store work it can cause are bounded whatever its
	// concurrency, while honest redemptions keep their latency. An honest
	// refusal during a flood waits its turn too (the flood's connections
	// divided by the rate: about 5 s for 256 at the default), which tells
	// nobody why it was refused. The rate is per Handler and instance.
	MaxRefusalRate float64
	// RefusalBurst is how many refusals may be answered at once before
	// MaxRefusalRate spaces them (default DefaultRefusalBurst).
	RefusalBurst int
}

// Defaults of HandlerOptions.
const (
	DefaultRefusalFloor   = 25 * time.Millisecond
	DefaultRequestTimeout = 30 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultMaxRefusalRate = 50
	DefaultRefusalBurst   = 10
)

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
//
// Refusals are paced (HandlerOptions.MaxRefusalRate): a flood of bogus
// tokens is answered at that rate, and a token refused on its face waits
// for its turn before any work, so however many connections, principals
// or addresses a flood uses, what it can make the vault do is bounded and
// honest redemptions keep their latency. Set the http.Server's own
// ReadHeaderTimeout and IdleTimeout too: connections are the server's to
// bound.
func (v *Vault) Handler(opts HandlerOptions) http.Handler {
	if opts.Principal == nil {
		panic("vault: HandlerOptions.Principal is required")
	}
	least := opts.RefusalFloor
	if least == 0 {
		least = DefaultRefusalFloor
	}
	reqTimeout := cmp.Or(opts.RequestTimeout, DefaultRequestTimeout)
	writeTimeout := cmp.Or(opts.WriteTimeout, DefaultWriteTimeout)
	var pace *pacer
	var minInterval time.Duration
	if rate := cmp.Or(opts.MaxRefusalRate, DefaultMaxRefusalRate); rate > 0 {
		pace = &pacer{burst: cmp.Or(opts.RefusalBurst, DefaultRefusalBurst)}
		minInterval = time.Duration(float64(time.Second) / rate)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		deadline := start.Add(reqTimeout)
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		defer cancel()
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// Every request takes its turn on arrival (served ones give it
		// back). A refusal is answered its floor after its turn, whatever
		// its kind and however long its work took: the turn depends only
		// on when it arrived, so queueing behind a flood hides the kind as
		// well as the floor alone does without one.
		turn, reserved := start, false
		if pace != nil {
			turn, reserved = pace.reserve(start, deadline, minInterval)
		}
		sleepUntil := func(at time.Time) {
			if d := min(time.Until(at), time.Until(deadline)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-r.Context().Done():
				}
				t.Stop()
			}
		}
		refuse := func(err error) {
			if opts.OnError != nil && err != nil {
				opts.OnError(r, err)
			}
			floor := time.Duration(0)
			if least > 0 {
				floor = v.RefusalFloor(least)
			}
			sleepUntil(turn.Add(floor))
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Content-Length", strconv.Itoa(len(notFoundBody)))
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, notFoundBody)
		}
		if r.Method != http.MethodGet {
			sleepUntil(turn)
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
		if reserved && v.refusedBeforeIO(tok, principal) {
			// A token refused on its face (forged, garbled, sealed under
			// a key this instance has yet to load, expired, or someone
			// else's) waits for its turn before any work: the reload, the
			// detector's counts and the refusal record then run at the
			// refusal rate too, however many arrive at once. (Without a
			// turn before the deadline, the work is done now, so no
			// refusal goes unrecorded; a client that leaves before its
			// turn had no answer and cost no work, and is not recorded.)
			sleepUntil(turn)
			if r.Context().Err() != nil {
				return
			}
		}
		// The stream outlives ctx: RequestTimeout bounds the time to the
		// first byte, the client's rate the rest.
		rc, info, err := v.redeemStream(ctx, tok, Requester{Principal: principal, RemoteAddr: r.RemoteAddr}, true)
		if err != nil {
			refuse(err)
			return
		}
		defer rc.Close()
		if reserved {
			pace.cancel(time.Now(), minInterval)
		}
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
		if err := copyWithDeadline(w, rc, writeTimeout); err != nil {
			if opts.OnError != nil {
				opts.OnError(r, err)
			}
			// The status is gone; abort the connection so the client sees a
			// broken transfer, never a complete-looking partial image.
			panic(http.ErrAbortHandler)
		}
	})
}

// minRateBytes is how much a client must take per WriteTimeout on average.
const minRateBytes = 32 << 10

// copyChunk is how much copyWithDeadline writes at a time: the memory a
// slow client pins here.
const copyChunk = 8 << 10

// copyWithDeadline copies src to w, copyChunk at a time. The client must
// take the stream at minRateBytes per timeout on average, counting only
// the time spent in writes to it (not the time the store takes), with one
// timeout of grace: each write's deadline is what is left of that
// allowance (where the ResponseWriter supports write deadlines).
func copyWithDeadline(w http.ResponseWriter, src io.Reader, timeout time.Duration) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, copyChunk)
	var sent int64
	var spent time.Duration // in writes so far
	allowance := func(n int64) time.Duration {
		return time.Duration(float64(n)/minRateBytes*float64(timeout)) + timeout - spent
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			start := time.Now()
			rc.SetWriteDeadline(start.Add(allowance(sent + int64(n))))
			_, err := w.Write(buf[:n])
			spent += time.Since(start)
			sent += int64(n)
			if err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			// The rest, still buffered, is written when the handler
			// returns: within the same allowance.
			rc.SetWriteDeadline(time.Now().Add(max(allowance(sent), timeout)))
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
