package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/idvault/idvault/vault/audit"
)

// filterFlags are the record filters shared by query and stats.
type filterFlags struct {
	store, since, until, principal, object, event, outcome, log, format *string
	keys                                                                *keyFlags
	unverified                                                          *bool
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	return &filterFlags{
		store:      storeFlag(fs),
		since:      fs.String("since", "", "only records at or after `TIME`: RFC 3339, a date (2021-04-20, UTC), a signed duration from now (-24h, -7d) or now"),
		until:      fs.String("until", "", "only records before `TIME` (same forms as --since)"),
		principal:  fs.String("principal", "", "only records of `PRINCIPAL` (exact match)"),
		object:     fs.String("object", "", "only records of the object `ID` (hex)"),
		event:      fs.String("event", "", "only this `EVENT`: "+oneOf(knownEvents)),
		outcome:    fs.String("outcome", "", "only this `OUTCOME`: "+oneOf(knownOutcomes)),
		log:        fs.String("log", "", "only the log `LOG` (its ID)"),
		format:     fs.String("format", "json", "output `FORMAT`: json (one object per line), table (aligned columns for people) or, for query, ocsf (OCSF events, one per line)"),
		keys:       addKeyFlags(fs),
		unverified: fs.Bool("unverified", false, "also show records no valid checkpoint covers yet (a live writer's last second, or records someone without the key wrote), marked unverified"),
	}
}

// filter checks the flags and builds the audit filter.
func (ff *filterFlags) filter(now time.Time) (audit.Filter, error) {
	var f audit.Filter
	var err error
	if *ff.since != "" {
		if f.Since, err = parseTimeArg(*ff.since, now); err != nil {
			return f, fmt.Errorf("--since: %w", err)
		}
	}
	if *ff.until != "" {
		if f.Until, err = parseTimeArg(*ff.until, now); err != nil {
			return f, fmt.Errorf("--until: %w", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, errors.New("--since must be before --until")
	}
	f.Principal = *ff.principal
	if o := strings.ToLower(*ff.object); o != "" {
		if !isHex(o) {
			return f, errors.New("--object must be a hex object ID")
		}
		f.Object = o
	}
	if e := *ff.event; e != "" {
		if !slices.Contains(knownEvents, e) {
			return f, errors.New("--event must be one of " + strings.Join(knownEvents, ", "))
		}
		f.Event = audit.Event(e)
	}
	if o := *ff.outcome; o != "" {
		if !slices.Contains(knownOutcomes, o) {
			return f, errors.New("--outcome must be " + oneOf(knownOutcomes))
		}
		f.Outcome = audit.Outcome(o)
	}
	if l := *ff.log; l != "" {
		if !audit.ValidLogID(l) {
			return f, errors.New("--log must be a log ID")
		}
		f.Log = l
	}
	return f, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return len(s) <= audit.MaxHexLen
}

var queryCommand = &command{
	path:    "audit query",
	summary: "list audit records: who touched what, when, why",
	usage:   "audit query [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--since TIME] [--until TIME] [--principal PRINCIPAL] [--object ID] [--event EVENT] [--outcome OUTCOME] [--log LOG] [--unverified] [--format FORMAT] [--limit N] [--after CURSOR | --cursor FILE] [--follow [--poll DURATION] [--timeout DURATION]]",
	help: `Lists the audit records that match every filter given, in time order
(records of several logs merged by time; equal times by log, then by
sequence number), as JSON lines (one object per record), as aligned
columns for people (--format table, IDs shortened to 12 characters), or as
OCSF events (--format ocsf, below). Records stream: memory stays bounded
by the number of logs and a reorder window of 8192 records, however large
the logs. A log is written in sequence order and its times follow that
order but for records appended after later ones (a redemption's release
record is folded into the log shortly after it happened; minutes after,
by another instance, after a crash): the window puts those in place. A
record further behind than the window is printed when it is read, after
later ones, and a warning counts them.

Only verified records are listed: query first runs the checks of
"idvault audit verify" and keeps the records a valid signed checkpoint
covers, with a warning when it finds a problem. --unverified lists the
others too, marked: "verified": false in JSON, UNVERIFIED in the table,
metadata.labels ["unverified"] in OCSF.

A redemption with outcome ok means the image was released, and nothing
else does: a replayed token, a deleted or tampered document is one
refused record with its reason. Count released images as
--event redeem --outcome ok.

--event takes every event the vault writes: ` + strings.Join(knownEvents, ", ") + `;
--outcome: ` + strings.Join(knownOutcomes, ", ") + ` ("started": a key-encryption-key
rewrap began).

JSON fields, always present: time (RFC 3339 with nanoseconds, UTC), log,
seq, event, outcome, reason, object, principal, purpose, token_id,
remote_addr, subject (a keyed hash, never the raw subject), detail, and
verified (false only with --unverified).

Streaming (for a SIEM): --follow keeps running and prints each new record
once a signed checkpoint covers it, polling every --poll; --timeout ends it
(exit 0). Each pass is in time order; a record sealed after a pass that
printed later records comes in the next pass. Where to resume is a cursor,
"c1:<log>=<next seq>,...": with --cursor FILE, query reads it from FILE at
start (a missing FILE is the beginning) and, after each pass once the
records are written out, replaces FILE with the new cursor atomically
(written beside it, synced, renamed), so a collector that restarts with the
same --cursor loses nothing and repeats at most the last pass. --after
CURSOR resumes from a cursor given on the command line. The cursor is also
printed on stderr as "cursor: ..." after each pass. Each pass re-verifies
the store (linear in its size).

OCSF (--format ocsf, schema 1.3.0, class 6003 API Activity, category 6
Application Activity): one JSON event per line, carrying every attribute
the class and its objects require (docs/siem.md has the whole mapping).
  activity_id      1 Create (put, grant), 2 Read (redeem, subject-access),
                   3 Update (hold, release, rotate), 4 Delete (delete,
                   expire, erase), 99 Other (decide, alert, sweep, open,
                   witness: activity_name is then the event); type_uid
                   6003*100 + activity_id
  time             the record's time, milliseconds since the epoch
  status_id        1 Success (outcome ok), 2 Failure (refused, error), 99
                   Other (started); status_code the outcome
  status_detail    the refusal reason (token-replayed, wrong-principal,
                   quota-exceeded, ...) or, on an alert, its kind
  severity_id      1 Informational; 2 Low for a refusal or an error; 4 High
                   for an alert, 5 Critical for canary-touched
  message          "<event> <outcome>[: <reason>][ (<detail>)]"
  actor            user.uid: the principal (who acted, or was granted);
                   without one (put, open), app_name "idvault" and app_uid
                   the log ID of the vault instance that wrote it
  api              operation: the event; request.uid: the token ID (hex)
  resources[0]     {uid: object ID, type: "identity-document", owner: {uid:
                   subject keyed hash}}; without an object but with a
                   subject (erase, subject-access): {uid: subject keyed
                   hash, type: "data-subject"}
  src_endpoint     {ip, port} from the requester's address; without one,
                   the writing instance: {svc_name "idvault", uid: log ID}
  metadata         version "1.3.0", product {name "idvault", vendor_name
                   "idvault", version}, uid "<log>:<seq>", log_name the
                   log, log_provider, sequence the seq, labels
                   ["unverified"] when so
  unmapped         {purpose, subject (keyed hash), detail, reason, outcome}

Example: every refused redemption in the last day, for people
  idvault audit query --store /var/lib/idvault --event redeem --outcome refused --since -24h --format table

Example: a SIEM feed that resumes where it stopped
  idvault audit query --store /var/lib/idvault --format ocsf --follow --cursor /var/lib/collector/idvault.cursor
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		ff := addFilterFlags(fs)
		limit := fs.Int("limit", 0, "stop after `N` records (0: no limit)")
		after := fs.String("after", "", "only records after `CURSOR` (printed on stderr by an earlier run)")
		cursorFile := fs.String("cursor", "", "read where to resume from `FILE` (missing: the beginning) and write the new cursor there after each pass, atomically")
		follow := fs.Bool("follow", false, "keep running: print new records as signed checkpoints cover them")
		poll := fs.Duration("poll", 2*time.Second, "with --follow, look for new records every `DURATION`")
		timeout := fs.Duration("timeout", 0, "stop after `DURATION` (0: never), exit 0")
		return func(ctx context.Context, c *cli) int {
			return c.query(ctx, ff, queryArgs{limit: *limit, after: *after, cursorFile: *cursorFile, follow: *follow, poll: *poll, timeout: *timeout})
		}
	},
}

type queryArgs struct {
	limit             int
	after, cursorFile string
	follow            bool
	poll, timeout     time.Duration
}

// jsonRecord is the JSON line of one record. The field names are part of
// the CLI's contract: scripts depend on them.
type jsonRecord struct {
	Time       string `json:"time"`
	Log        string `json:"log"`
	Seq        int64  `json:"seq"`
	Event      string `json:"event"`
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason"`
	Object     string `json:"object"`
	Principal  string `json:"principal"`
	Purpose    string `json:"purpose"`
	TokenID    string `json:"token_id"`
	RemoteAddr string `json:"remote_addr"`
	Subject    string `json:"subject"`
	Detail     string `json:"detail"`
	Verified   bool   `json:"verified"`
}

func toJSONRecord(r audit.Record) jsonRecord {
	return jsonRecord{
		Time:       r.Time.UTC().Format(time.RFC3339Nano),
		Log:        r.Log,
		Seq:        r.Seq,
		Event:      string(r.Event),
		Outcome:    string(r.Outcome),
		Reason:     r.Reason,
		Object:     r.Object,
		Principal:  r.Principal,
		Purpose:    r.Purpose,
		TokenID:    r.TokenID,
		RemoteAddr: r.RemoteAddr,
		Subject:    r.Subject,
		Detail:     r.Detail,
		Verified:   true,
	}
}

// tableFlushRows bounds what the table writer holds: columns are aligned
// within blocks of this many rows, so a huge query still streams.
const tableFlushRows = 1000

// tableTime is the time format of table output (milliseconds; JSON keeps
// nanoseconds).
const tableTime = "2006-01-02T15:04:05.000Z07:00"

func (c *cli) query(ctx context.Context, ff *filterFlags, a queryArgs) int {
	f, err := ff.filter(c.now)
	if err != nil {
		return c.usageError(err.Error())
	}
	switch *ff.format {
	case "json", "table", "ocsf":
	default:
		return c.usageError("--format must be json, table or ocsf")
	}
	switch {
	case a.limit < 0:
		return c.usageError("--limit must not be negative")
	case a.follow && *ff.unverified:
		return c.usageError("--follow streams verified records only; drop --unverified")
	case a.follow && a.limit > 0:
		return c.usageError("--follow and --limit do not go together")
	case a.poll <= 0 || a.timeout < 0:
		return c.usageError("--poll must be positive and --timeout not negative")
	}
	cur := cursor{}
	switch {
	case a.after != "" && a.cursorFile != "":
		return c.usageError("--after and --cursor do not go together")
	case a.cursorFile != "" && *ff.unverified:
		return c.usageError("--cursor records verified records only; drop --unverified")
	case a.after != "":
		if cur, err = parseCursor(a.after); err != nil {
			return c.usageError(err.Error())
		}
	case a.cursorFile != "":
		if cur, err = readCursorFile(a.cursorFile); err != nil {
			return c.usageError(err.Error())
		}
	}
	st, key, code := c.openKeyedURL(ctx, *ff.store, ff.keys)
	if code != 0 {
		return code
	}
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	emit, finish := c.recordWriter(out, *ff.format)
	n := 0
	for pass := 0; ; pass++ {
		src, code := c.openSource(ctx, st, key, f, *ff.unverified, cur, pass > 0)
		if code != 0 {
			if ctx.Err() != nil && (a.follow || a.timeout > 0) {
				break // --timeout, or an interrupt while following
			}
			return code
		}
		cut := false
		rd := src.reader()
		for r, err := range rd.records(ctx) {
			if err != nil {
				finish()
				out.Flush()
				if ctx.Err() != nil && (a.follow || a.timeout > 0) {
					return exitOK
				}
				return c.fail(fmt.Errorf("reading the audit log: %w", err))
			}
			if err := emit(r.Record, r.verified); err != nil {
				return c.fail(err)
			}
			if n++; a.limit > 0 && n >= a.limit {
				cut = true
				break
			}
		}
		if cut {
			rd.stopAt(cur)
		} else {
			cur.advance(src.sizes)
		}
		if err := finish(); err != nil {
			return c.fail(err)
		}
		if err := out.Flush(); err != nil {
			return c.fail(err)
		}
		if rd.late > 0 {
			fmt.Fprintf(c.stderr, "warning: %d records printed after later ones: their log went back in time by more than %d records\n", rd.late, rd.window)
		}
		if !*ff.unverified {
			if a.cursorFile != "" {
				if err := writeCursorFile(a.cursorFile, cur); err != nil {
					return c.fail(err)
				}
			}
			fmt.Fprintf(c.stderr, "cursor: %s\n", cur)
		}
		if !a.follow || cut {
			break
		}
		t := time.NewTimer(a.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return exitOK
		case <-t.C:
		}
	}
	return exitOK
}

// recordWriter returns the function that prints one record in format,
// and the one to call at the end of a pass.
func (c *cli) recordWriter(out io.Writer, format string) (func(audit.Record, bool) error, func() error) {
	switch format {
	case "table":
		var tw *tabwriter.Writer
		rows := 0
		start := func() {
			tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			io.WriteString(tw, "TIME\tLOG\tSEQ\tEVENT\tOUTCOME\tREASON\tOBJECT\tPRINCIPAL\tPURPOSE\tTOKEN-ID\tREMOTE\tSUBJECT\tDETAIL\tVERIFIED\n")
		}
		start()
		return func(r audit.Record, verified bool) error {
				v := "yes"
				if !verified {
					v = "UNVERIFIED"
				}
				_, err := fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
					r.Time.UTC().Format(tableTime), shortID(r.Log), r.Seq, cell(string(r.Event)), cell(string(r.Outcome)),
					cell(r.Reason), shortID(r.Object), cell(r.Principal), cell(r.Purpose), shortID(r.TokenID),
					cell(r.RemoteAddr), shortID(r.Subject), cell(r.Detail), v)
				if rows++; err == nil && rows%tableFlushRows == 0 {
					err = tw.Flush()
				}
				return err
			}, func() error {
				err := tw.Flush()
				rows = 0
				return err
			}
	case "ocsf":
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		return func(r audit.Record, verified bool) error { return enc.Encode(toOCSF(r, verified)) }, func() error { return nil }
	default:
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		return func(r audit.Record, verified bool) error {
			j := toJSONRecord(r)
			j.Verified = verified
			return enc.Encode(j)
		}, func() error { return nil }
	}
}

// shortIDLen is how much of a hex ID a table shows: enough to tell
// documents apart by eye and to grep the JSON for the rest.
const shortIDLen = 12

// shortID renders a hex ID for a table: its first shortIDLen characters
// and "..".
func shortID(s string) string {
	if len(s) > shortIDLen {
		return cell(s[:shortIDLen]) + ".."
	}
	return cell(s)
}

// cell renders a field for a table: "-" when empty, quoted when it holds
// anything but printable characters and plain spaces, so that a principal
// or detail can neither break the columns nor send escapes to a terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsGraphic(r) }) {
		return strconv.QuoteToGraphic(s)
	}
	return s
}
