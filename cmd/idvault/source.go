package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strconv"
	"strings"

	"github.com/idvault/idvault/vault/audit"
	"github.com/idvault/idvault/vault/store"
)

// source is what query and stats read: the records of every log, verified
// first, merged by time.
type source struct {
	st         store.Store
	f          audit.Filter
	sizes      map[string]int64 // verified records per log
	logs       []string
	unverified bool
	from       cursor
}

// openSource verifies the store and returns the records to read. Problems
// are a warning: the records a valid checkpoint covers before each
// problem are still trustworthy.
func (c *cli) openSource(ctx context.Context, st store.Store, key string, f audit.Filter, unverified bool, from cursor, quiet bool) (*source, int) {
	rep, err := audit.Verify(ctx, st, key, audit.VerifyOptions{})
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		return nil, c.fail(fmt.Errorf("verifying the audit log: %w", err))
	}
	if ps := rep.Problems(); len(ps) > 0 && !quiet {
		fmt.Fprintf(c.stderr, "warning: verification found %d problems; only the records verified before each are shown as verified; first: %s\n", len(ps), ps[0])
	}
	src := &source{st: st, f: f, sizes: rep.VerifiedSizes(), unverified: unverified, from: from}
	for _, l := range rep.Logs {
		if l.Records > 0 && audit.ValidLogID(l.Log) && (f.Log == "" || f.Log == l.Log) {
			src.logs = append(src.logs, l.Log)
		}
	}
	return src, 0
}

// rec is a record and whether a valid checkpoint covers it.
type rec struct {
	audit.Record
	verified bool
}

// records yields the records of every log merged by time (ties by log,
// then seq), holding one record per log: the logs are few (one per
// concurrent writer), each log's records come in sequence order.
func (s *source) records(ctx context.Context) iter.Seq2[rec, error] {
	return func(yield func(rec, error) bool) {
		h := &recHeap{}
		var stops []func()
		defer func() {
			for _, stop := range stops {
				stop()
			}
		}()
		pull := func(e *heapEntry) error {
			for {
				r, err, ok := e.next()
				if !ok {
					return nil
				}
				if err != nil {
					return err
				}
				if r.Seq < s.from[r.Log] {
					continue
				}
				e.rec = rec{Record: r, verified: r.Seq < s.sizes[r.Log]}
				heap.Push(h, e)
				return nil
			}
		}
		for _, log := range s.logs {
			f := s.f
			f.Log = log
			if !s.unverified {
				f.Verified = s.sizes
			}
			next, stop := iter.Pull2(audit.Scan(ctx, s.st, f))
			stops = append(stops, stop)
			if err := pull(&heapEntry{next: next}); err != nil {
				yield(rec{}, err)
				return
			}
		}
		for h.Len() > 0 {
			e := heap.Pop(h).(*heapEntry)
			if !yield(e.rec, nil) {
				return
			}
			if err := pull(e); err != nil {
				yield(rec{}, err)
				return
			}
		}
	}
}

type heapEntry struct {
	next func() (audit.Record, error, bool)
	rec  rec
}

type recHeap []*heapEntry

func (h recHeap) Len() int { return len(h) }
func (h recHeap) Less(i, j int) bool {
	a, b := h[i].rec, h[j].rec
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Log != b.Log {
		return a.Log < b.Log
	}
	return a.Seq < b.Seq
}
func (h recHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)   { *h = append(*h, x.(*heapEntry)) }
func (h *recHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// cursor is where a reader stopped: per log, the first sequence number not
// yet delivered. It is printed as
//
//	c1:<log>=<next seq>,<log>=<next seq>,...
//
// with logs in ascending order ("c1:" alone: from the start).
type cursor map[string]int64

const (
	cursorPrefix  = "c1:"
	maxCursorLen  = 1 << 20
	maxCursorLogs = 1 << 14
)

// errCursor marks an --after value that is not a cursor.
var errCursor = errors.New("invalid cursor")

// parseCursor parses a cursor strictly: what String prints, nothing else.
func parseCursor(s string) (cursor, error) {
	if len(s) > maxCursorLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errCursor, maxCursorLen)
	}
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want c1:<log>=<seq>,... as printed by an earlier run", errCursor)
	}
	c := cursor{}
	if rest == "" {
		return c, nil
	}
	prev := ""
	for i, part := range strings.Split(rest, ",") {
		if i >= maxCursorLogs {
			return nil, fmt.Errorf("%w: more than %d logs", errCursor, maxCursorLogs)
		}
		log, n, ok := strings.Cut(part, "=")
		seq, err := strconv.ParseInt(n, 10, 64)
		switch {
		case !ok || !audit.ValidLogID(log):
			return nil, fmt.Errorf("%w: entry %d is not <log>=<seq>", errCursor, i+1)
		case err != nil || seq < 1 || strconv.FormatInt(seq, 10) != n:
			return nil, fmt.Errorf("%w: entry %d: the sequence number must be a positive decimal", errCursor, i+1)
		case log <= prev:
			return nil, fmt.Errorf("%w: logs out of order or repeated", errCursor)
		}
		c[log], prev = seq, log
	}
	return c, nil
}

// String prints c canonically.
func (c cursor) String() string {
	logs := make([]string, 0, len(c))
	for l, n := range c {
		if n > 0 {
			logs = append(logs, l)
		}
	}
	sort.Strings(logs)
	var b strings.Builder
	b.WriteString(cursorPrefix)
	for i, l := range logs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l + "=" + strconv.FormatInt(c[l], 10))
	}
	return b.String()
}

// saw records that the record log/seq was delivered.
func (c cursor) saw(log string, seq int64) {
	if seq+1 > c[log] {
		c[log] = seq + 1
	}
}

// advance moves every log to its verified size: a pass that ran to the
// end has delivered (or filtered out) every verified record.
func (c cursor) advance(sizes map[string]int64) {
	for l, n := range sizes {
		if n > c[l] {
			c[l] = n
		}
	}
}

// ocsfEvent is one record as an OCSF 1.3.0 event (API Activity 6003 or
// File System Activity 1001); the query help documents every field.
type ocsfEvent struct {
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	TypeUID      int            `json:"type_uid"`
	Time         int64          `json:"time"`
	SeverityID   int            `json:"severity_id"`
	Severity     string         `json:"severity"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	StatusCode   string         `json:"status_code"`
	StatusDetail string         `json:"status_detail,omitempty"`
	Message      string         `json:"message"`
	Actor        *ocsfActor     `json:"actor,omitempty"`
	API          *ocsfAPI       `json:"api,omitempty"`
	Resources    []ocsfResource `json:"resources,omitempty"`
	File         *ocsfFile      `json:"file,omitempty"`
	SrcEndpoint  *ocsfEndpoint  `json:"src_endpoint,omitempty"`
	Metadata     ocsfMetadata   `json:"metadata"`
	Unmapped     map[string]any `json:"unmapped"`
}

type ocsfActor struct {
	User struct {
		UID string `json:"uid"`
	} `json:"user"`
}

type ocsfAPI struct {
	Operation string `json:"operation"`
	Request   *struct {
		UID string `json:"uid"`
	} `json:"request,omitempty"`
}

type ocsfResource struct {
	UID  string `json:"uid"`
	Type string `json:"type"`
}

type ocsfFile struct {
	UID    string `json:"uid"`
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
}

type ocsfEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
	Name string `json:"name,omitempty"`
}

type ocsfMetadata struct {
	Version  string   `json:"version"`
	Product  ocsfProd `json:"product"`
	UID      string   `json:"uid"`
	LogName  string   `json:"log_name"`
	Sequence int64    `json:"sequence"`
	Labels   []string `json:"labels,omitempty"`
}

type ocsfProd struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// toOCSF maps one record to an OCSF event.
func toOCSF(r audit.Record, verified bool) ocsfEvent {
	e := ocsfEvent{ClassUID: 6003, ClassName: "API Activity", CategoryUID: 6, CategoryName: "Application Activity",
		Time: r.Time.UnixMilli(), StatusCode: string(r.Outcome), StatusDetail: r.Reason,
		Metadata: ocsfMetadata{Version: "1.3.0", Product: ocsfProd{Name: "idvault", VendorName: "idvault"},
			UID: r.Log + ":" + strconv.FormatInt(r.Seq, 10), LogName: r.Log, Sequence: r.Seq},
		Unmapped: map[string]any{"purpose": r.Purpose, "subject": r.Subject, "detail": r.Detail, "reason": r.Reason, "outcome": string(r.Outcome)},
	}
	switch r.Event {
	case audit.EventPut, audit.EventGrant:
		e.ActivityID, e.ActivityName = 1, "Create"
	case audit.EventRedeem:
		e.ActivityID, e.ActivityName = 2, "Read"
	case audit.EventHold, audit.EventRelease, audit.EventRotate:
		e.ActivityID, e.ActivityName = 3, "Update"
	case audit.EventDelete, audit.EventExpire, audit.EventErase:
		e.ClassUID, e.ClassName, e.CategoryUID, e.CategoryName = 1001, "File System Activity", 1, "System Activity"
		e.ActivityID, e.ActivityName = 4, "Delete"
	default:
		e.ActivityID, e.ActivityName = 99, "Other"
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	if r.Outcome == audit.OutcomeOK {
		e.StatusID, e.Status = 1, "Success"
	} else {
		e.StatusID, e.Status = 2, "Failure"
	}
	e.SeverityID, e.Severity = 1, "Informational"
	switch {
	case r.Event == audit.EventAlert && r.Reason == "canary-touched":
		e.SeverityID, e.Severity = 5, "Critical"
	case r.Event == audit.EventAlert:
		e.SeverityID, e.Severity = 4, "High"
	case r.Outcome != audit.OutcomeOK:
		e.SeverityID, e.Severity = 2, "Low"
	}
	e.Message = string(r.Event) + " " + string(r.Outcome)
	if r.Reason != "" {
		e.Message += ": " + r.Reason
	}
	if r.Detail != "" {
		e.Message += " (" + r.Detail + ")"
	}
	if r.Principal != "" {
		e.Actor = &ocsfActor{}
		e.Actor.User.UID = r.Principal
	}
	if e.ClassUID == 6003 {
		e.API = &ocsfAPI{Operation: string(r.Event)}
		if r.TokenID != "" {
			e.API.Request = &struct {
				UID string `json:"uid"`
			}{r.TokenID}
		}
		if r.Object != "" {
			e.Resources = []ocsfResource{{UID: r.Object, Type: "identity-document"}}
		}
	} else if r.Object != "" {
		e.File = &ocsfFile{UID: r.Object, Name: r.Object, TypeID: 1}
	}
	if r.RemoteAddr != "" {
		e.SrcEndpoint = endpointOf(r.RemoteAddr)
	}
	if !verified {
		e.Metadata.Labels = []string{"unverified"}
	}
	return e
}

// endpointOf splits "ip:port" (or "[ip6]:port"); anything else is kept
// as a name.
func endpointOf(addr string) *ocsfEndpoint {
	host, port := addr, ""
	if i := strings.LastIndexByte(addr, ':'); i > 0 && !strings.HasSuffix(addr, "]") {
		host, port = addr[:i], addr[i+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strings.Count(host, ":") == 1 {
		return &ocsfEndpoint{Name: addr}
	}
	return &ocsfEndpoint{IP: host, Port: p}
}
