package main

import (
	"container/heap"
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/idvault/idvault/vault"
	"github.com/idvault/idvault/vault/audit"
)

// recentEvents is how many audit records the security page lists.
const recentEvents = 100

// auditEvents are the events offered in the filter.
var auditEvents = []audit.Event{
	audit.EventPut, audit.EventGrant, audit.EventRedeem, audit.EventDelete, audit.EventExpire,
	audit.EventErase, audit.EventHold, audit.EventRelease, audit.EventRotate, audit.EventAlert,
	audit.EventSweep, audit.EventOpen,
}

var auditOutcomes = []audit.Outcome{audit.OutcomeOK, audit.OutcomeRefused, audit.OutcomeError}

var eventPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// securityPage is the data of the security template.
type securityPage struct {
	Verify    verifyStatus
	Filter    audit.Filter
	Events    []audit.Record
	Matched   int
	EventOpts []audit.Event
	OutOpts   []audit.Outcome
	Chart     chart
	Live      []vault.Alert  // from Config.Detection.OnAlert, since this process started
	History   []audit.Record // audit records with event "alert", newest first
	Frozen    []string
	Canaries  []canaryStatus
	VerifyKey string
	ScanError string
}

type verifyStatus struct {
	OK         bool
	Error      string // the verification did not finish
	Logs       []audit.LogReport
	Records    int64
	Unsealed   int64
	Problems   []audit.Problem
	VerifiedAt time.Time
}

type canaryStatus struct {
	ID       string
	Expires  time.Time
	Touched  int
	LastBy   string
	LastTime time.Time
}

// handleSecurity is the auditor's page: the audit log verified, recent
// events with filters, per-reviewer volume, alerts, frozen accounts and
// canaries. Everything is read from the audit log in the store, which is
// what a security team can trust after the fact (audit.Verify says so).
func (a *App) handleSecurity(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := a.now()
	q := r.URL.Query()
	f := audit.Filter{}
	if e := q.Get("event"); eventPattern.MatchString(e) {
		f.Event = audit.Event(e)
	}
	if o := audit.Outcome(q.Get("outcome")); slices.Contains(auditOutcomes, o) {
		f.Outcome = o
	}
	if p := q.Get("principal"); len(p) <= audit.MaxTextLen {
		f.Principal = p
	}
	data := securityPage{Filter: f, EventOpts: auditEvents, OutOpts: auditOutcomes,
		Live: a.alerts.recent(), VerifyKey: a.v.AuditVerifierKey()}
	// This instance's latest releases are folded into the log in the
	// background; wait for them so the page counts every view.
	a.v.Admin().SyncAudit(ctx)
	data.Verify = a.verify(ctx, now)

	events, matched, err := newestRecords(ctx, a, f, recentEvents)
	data.Events, data.Matched = events, matched
	if err != nil {
		data.ScanError = err.Error()
	}

	vol, err := a.reviewVolume(ctx, now)
	if err != nil && data.ScanError == "" {
		data.ScanError = err.Error()
	}
	data.Chart = volumeChart(vol, now)

	alerts, _, err := newestRecords(ctx, a, audit.Filter{Event: audit.EventAlert}, 1<<16)
	if err != nil && data.ScanError == "" {
		data.ScanError = err.Error()
	}
	data.History = alerts[:min(len(alerts), recentEvents)]
	data.Frozen = frozenPrincipals(alerts)
	for _, c := range a.state.liveCanaries(now) {
		cs := canaryStatus{ID: c.ID, Expires: c.Expires}
		for _, rec := range alerts { // newest first
			if rec.Reason == string(vault.AlertCanary) && rec.Object == c.ID {
				if cs.Touched == 0 {
					cs.LastBy, cs.LastTime = rec.Principal, rec.Time
				}
				cs.Touched++
			}
		}
		data.Canaries = append(data.Canaries, cs)
	}
	a.render(w, r, http.StatusOK, "security", "Security", data)
}

func (a *App) verify(ctx context.Context, now time.Time) verifyStatus {
	rep, err := audit.Verify(ctx, a.st, a.v.AuditVerifierKey(), audit.VerifyOptions{})
	vs := verifyStatus{VerifiedAt: now}
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		vs.Error = err.Error()
		return vs
	}
	vs.OK = rep.OK()
	vs.Logs = rep.Logs
	vs.Problems = rep.Problems()
	for _, l := range rep.Logs {
		vs.Records += l.Records
		vs.Unsealed += l.Unsealed
	}
	return vs
}

// newestRecords scans the records matching f and keeps the n newest (a
// bounded heap: the log is streamed, never loaded whole). It returns them
// newest first, with the number that matched.
func newestRecords(ctx context.Context, a *App, f audit.Filter, n int) ([]audit.Record, int, error) {
	h := &recordHeap{}
	matched := 0
	for rec, err := range audit.Scan(ctx, a.st, f) {
		if err != nil {
			return h.sorted(), matched, err
		}
		matched++
		heap.Push(h, rec)
		if h.Len() > n {
			heap.Pop(h)
		}
	}
	return h.sorted(), matched, nil
}

// recordHeap is a min-heap by time: its root is the oldest record kept.
type recordHeap []audit.Record

func (h recordHeap) Len() int { return len(h) }
func (h recordHeap) Less(i, j int) bool {
	if !h[i].Time.Equal(h[j].Time) {
		return h[i].Time.Before(h[j].Time)
	}
	return h[i].Seq < h[j].Seq
}
func (h recordHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)   { *h = append(*h, x.(audit.Record)) }
func (h *recordHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h recordHeap) sorted() []audit.Record {
	out := slices.Clone(h)
	slices.SortFunc(out, func(a, b audit.Record) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return int(b.Seq - a.Seq)
	})
	return out
}

// frozenPrincipals replays the alert history (newest first) to find the
// principals frozen and not unfrozen since.
func frozenPrincipals(alertsNewestFirst []audit.Record) []string {
	seen := map[string]bool{}
	var frozen []string
	for _, rec := range alertsNewestFirst {
		who := rec.Principal
		if rec.Reason == "unfrozen" {
			// Principal is the actor who unfroze; Detail names whom:
			// "unfroze <principal>: <reason>".
			d, ok := strings.CutPrefix(rec.Detail, "unfroze ")
			if !ok {
				continue
			}
			who, _, _ = strings.Cut(d, ": ")
		}
		if who == "" || seen[who] {
			continue
		}
		switch rec.Reason {
		case string(vault.AlertFrozen):
			seen[who] = true
			frozen = append(frozen, who)
		case "unfrozen":
			seen[who] = true
		}
	}
	slices.Sort(frozen)
	return frozen
}

// handleUnfreeze lifts a freeze, with an audited reason naming the auditor.
func (a *App) handleUnfreeze(w http.ResponseWriter, r *http.Request) {
	acct := accountFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	p := r.PostFormValue("principal")
	if p == "" || len(p) > audit.MaxTextLen {
		a.fail(w, r, http.StatusBadRequest, "Which principal?")
		return
	}
	if err := a.v.Admin().Unfreeze(r.Context(), p, vault.Actor{Principal: acct.ID, Reason: "on the security page"}); err != nil {
		a.logf("unfreeze: %v", err)
		a.fail(w, r, http.StatusInternalServerError, "Could not unfreeze.")
		return
	}
	http.Redirect(w, r, "/security", http.StatusSeeOther)
}
