package main

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/idvault/idvault/vault"
)

// purpose is recorded with every grant in the audit log.
const purpose = "age-check"

// canaryMemory is how long the app remembers a canary the queue listed
// (the vault's retention; the vault refuses an expired one anyway).
const canaryMemory = vault.DefaultRetention

// queueItem is one document on the review page. ImageURL holds a fresh
// single-use token for the signed-in reviewer: it is a bearer secret until
// the browser spends it, so it appears in the page and nowhere else.
type queueItem struct {
	ID        string
	Member    string // display name of the member's account
	Kind      string
	Submitted time.Time
	Expires   time.Time
	ImageURL  string
	LinkUntil time.Time
	Canary    bool // a decoy, listed as a hidden link only (see handleQueue)
}

// reviewPage is the data of the review template.
type reviewPage struct {
	Items   []queueItem
	Visible int // items that are not canaries
	More    int // pending documents not shown (QueueLimit)
	Single  bool
	MaxDate string
	Flash   string
}

// handleQueue shows the documents awaiting review, each as an <img> whose
// URL holds a token minted for this reviewer now: reloading mints new ones,
// and every URL works once.
//
// The list goes through vault.MixCanaries, which mixes in canaries the
// vault planted among the uploads; they are rendered as hidden links to
// their own review pages. A person never sees them; a script that walks
// every document link requests one, the vault raises AlertCanary on the
// grant and freezes the account.
func (a *App) handleQueue(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	now := a.now()
	var shown []submission
	more := 0
	for _, sub := range a.state.pending() {
		if !now.Before(sub.Expires) {
			continue // expired: refused by the vault anyway, deleted by the sweeper
		}
		if len(shown) == a.opts.QueueLimit {
			more++
			continue
		}
		shown = append(shown, sub)
	}
	// Grant concurrently: each grant waits for its audit record to be
	// durable, and concurrent appends share one write (group commit).
	results := make([]queueItem, len(shown))
	errs := make([]error, len(shown))
	var wg sync.WaitGroup
	for i, sub := range shown {
		wg.Go(func() { results[i], errs[i] = a.grantItem(r.Context(), acct, sub) })
	}
	wg.Wait()
	var items []queueItem
	for i, err := range errs {
		switch {
		case errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrExpired):
			_ = a.state.drop(shown[i].ID)
		case err != nil:
			a.failGrant(w, r, err)
			return
		default:
			items = append(items, results[i])
		}
	}
	visible := len(items)
	// Mix canaries in at random positions, as hidden entries, and remember
	// them (for their review page and the security page).
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	listed, err := a.v.MixCanaries(r.Context(), ids)
	if err != nil {
		a.logf("review: listing canaries: %v", err)
		listed = ids
	}
	var fresh []canary
	for _, id := range listed {
		if !slices.Contains(ids, id) {
			fresh = append(fresh, canary{ID: id, Expires: now.Add(canaryMemory)})
		}
	}
	if err := a.state.addCanaries(now, fresh); err != nil {
		a.logf("review: saving canaries: %v", err)
	}
	for i, id := range listed {
		if !slices.Contains(ids, id) {
			items = slices.Insert(items, i, queueItem{ID: id, Canary: true})
		}
	}
	a.render(w, r, http.StatusOK, "review", "Review queue", reviewPage{
		Items: items, Visible: visible, More: more, MaxDate: now.Format(time.DateOnly), Flash: r.URL.Query().Get("done"),
	})
}

// handleReviewOne shows one document. It is also the target of the hidden
// canary links: a canary is granted like any document (that raises the
// alert) and looks like one.
func (a *App) handleReviewOne(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	id := r.PathValue("id")
	sub, ok := a.state.lookup(id)
	if !ok {
		if !a.isCanary(id) {
			a.fail(w, r, http.StatusNotFound, "No such document awaiting review.")
			return
		}
		sub = submission{ID: id, Member: "", Kind: documentKinds[0].Value}
	}
	it, err := a.grantItem(r.Context(), acct, sub)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrExpired) {
		a.fail(w, r, http.StatusNotFound, "No such document awaiting review.")
		return
	}
	if err != nil {
		a.failGrant(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, "review", "Review", reviewPage{
		Items: []queueItem{it}, Visible: 1, Single: true, MaxDate: a.now().Format(time.DateOnly),
	})
}

func (a *App) isCanary(id string) bool {
	for _, c := range a.state.liveCanaries(a.now()) {
		if c.ID == id {
			return true
		}
	}
	return false
}

// grantItem mints a single-use token for sub's image, for the reviewer.
func (a *App) grantItem(ctx context.Context, reviewer account, sub submission) (queueItem, error) {
	g, err := a.v.Grant(ctx, sub.ID, vault.Access{Principal: reviewer.ID, Purpose: purpose, TTL: a.opts.ImageTTL})
	if err != nil {
		return queueItem{}, err
	}
	name := "—"
	if m, ok := accountByID(sub.Member); ok {
		name = m.Name
	}
	return queueItem{ID: sub.ID, Member: name, Kind: sub.Kind, Submitted: sub.Submitted, Expires: sub.Expires,
		ImageURL: "/img/" + g.Token, LinkUntil: g.ExpiresAt}, nil
}

// failGrant renders a refused grant: over quota or frozen is the
// reviewer's to know (429); anything else is ours (500).
func (a *App) failGrant(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, vault.ErrFrozen):
		a.fail(w, r, http.StatusTooManyRequests, "Your access to documents is frozen after a security alert. Ask an auditor.")
		return
	case errors.Is(err, vault.ErrQuotaExceeded):
		a.fail(w, r, http.StatusTooManyRequests, "You are over your review quota for now. Try again later.")
		return
	}
	a.logf("review: grant: %v", err)
	a.fail(w, r, http.StatusInternalServerError, "Could not open the review queue.")
}

// handleDecide records a decision and deletes the image at once. Only the
// outcome and the birth date the reviewer read are kept.
func (a *App) handleDecide(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	id := r.PostFormValue("id")
	var outcome string
	switch r.PostFormValue("outcome") {
	case "approve":
		outcome = outcomeApproved
	case "reject":
		outcome = outcomeRejected
	default:
		a.fail(w, r, http.StatusBadRequest, "Choose approve or reject.")
		return
	}
	now := a.now()
	birth := r.PostFormValue("birthdate")
	if birth != "" || outcome == outcomeApproved {
		b, err := time.Parse(time.DateOnly, birth)
		if err != nil || b.After(now) || b.Year() < 1900 {
			a.fail(w, r, http.StatusUnprocessableEntity, "Enter the birth date shown on the document (YYYY-MM-DD).")
			return
		}
		if outcome == outcomeApproved && age(b, now) < 18 {
			a.fail(w, r, http.StatusUnprocessableEntity, "That birth date is under 18: reject instead.")
			return
		}
	}
	if _, ok := a.state.lookup(id); !ok {
		a.fail(w, r, http.StatusConflict, "That document was already decided or has expired.")
		return
	}
	sub, err := a.state.decide(id, decision{Outcome: outcome, BirthDate: birth, Reviewer: acct.ID, Decided: now})
	if err != nil {
		if errors.Is(err, errNotPending) {
			a.fail(w, r, http.StatusConflict, "That document was already decided or has expired.")
			return
		}
		a.logf("decide: saving state: %v", err)
		a.fail(w, r, http.StatusInternalServerError, "Could not record the decision.")
		return
	}
	// The decision is made: the image has no further use. Decide records
	// it (the vault's detector counts a reviewer's views without
	// decisions), then shreds the image (key record first) and audits the
	// deletion.
	verdict := vault.Approved
	if outcome == outcomeRejected {
		verdict = vault.Rejected
	}
	switch err := a.v.Decide(r.Context(), id, vault.Decision{Verdict: verdict}, vault.Actor{Principal: acct.ID, Reason: "reviewed-" + outcome}); {
	case err == nil, errors.Is(err, vault.ErrNotFound):
	case errors.Is(err, vault.ErrNotViewed):
		// The vault accepts a decision only from someone who opened the
		// document: put the submission back in the queue.
		if uerr := a.state.undecide(sub); uerr != nil {
			a.logf("decide: restoring state: %v", uerr)
		}
		a.fail(w, r, http.StatusForbidden, "Open the document before deciding about it.")
		return
	case errors.Is(err, vault.ErrHeld):
		a.fail(w, r, http.StatusConflict, "Decision recorded. The image is under legal hold and is kept until the hold is lifted.")
		return
	default:
		a.logf("decide: delete: %v", err)
		a.fail(w, r, http.StatusInternalServerError, "Decision recorded, but the image could not be deleted now; it will be deleted at its expiry.")
		return
	}
	http.Redirect(w, r, "/review?done="+outcome, http.StatusSeeOther)
}

// age is the age in whole years at now of someone born on birth.
func age(birth, now time.Time) int {
	n := now.Year() - birth.Year()
	if now.Month() < birth.Month() || now.Month() == birth.Month() && now.Day() < birth.Day() {
		n--
	}
	return n
}
