package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	return &filterFlags{
		store:     storeFlag(fs),
		since:     fs.String("since", "", "only records at or after `TIME`: RFC 3339, a date (2021-04-20, UTC), a signed duration from now (-24h, -7d) or now"),
		until:     fs.String("until", "", "only records before `TIME` (same forms as --since)"),
		principal: fs.String("principal", "", "only records of `PRINCIPAL` (exact match)"),
		object:    fs.String("object", "", "only records of the object `ID` (hex)"),
		event:     fs.String("event", "", "only this `EVENT`: put, grant, redeem, delete, expire, erase, hold, release, rotate, alert, sweep, open"),
		outcome:   fs.String("outcome", "", "only this `OUTCOME`: ok, refused, error"),
		log:       fs.String("log", "", "only the log `LOG` (its ID)"),
		format:    fs.String("format", "json", "output `FORMAT`: json (one object per line) or table (aligned columns for people)"),
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
		if !isToken(e, audit.MaxEventLen) {
			return f, errors.New("--event must be an event name such as grant or redeem")
		}
		f.Event = audit.Event(e)
	}
	if o := *ff.outcome; o != "" {
		switch audit.Outcome(o) {
		case audit.OutcomeOK, audit.OutcomeRefused, audit.OutcomeError:
		default:
			return f, errors.New("--outcome must be ok, refused or error")
		}
		f.Outcome = audit.Outcome(o)
	}
	if l := *ff.log; l != "" {
		if !audit.ValidLogID(l) {
			return f, errors.New("--log must be a log ID")
		}
		f.Log = l
	}
	switch *ff.format {
	case "json", "table":
	default:
		return f, errors.New("--format must be json or table")
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

func isToken(s string, max int) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return len(s) <= max
}

var queryCommand = &command{
	path:    "audit query",
	summary: "list audit records: who touched what, when, why",
	usage:   "audit query [--store URL] [--since TIME] [--until TIME] [--principal PRINCIPAL] [--object ID] [--event EVENT] [--outcome OUTCOME] [--log LOG] [--format FORMAT] [--limit N]",
	help: `Lists the audit records that match every filter given, in (log, sequence)
order, as JSON lines (one object per record) or, with --format table, as
aligned columns for people. Query does not check signatures: run
"idvault audit verify" first to know the records can be trusted.

JSON fields, always present: time (RFC 3339 with nanoseconds, UTC), log,
seq, event, outcome, reason, object, principal, purpose, token_id,
remote_addr, subject (a keyed hash, never the raw subject), detail.

The vault writes a redemption's record while it spends the token, so both
are durable before a byte leaves. When the spend loses (a replayed token)
the "redeem ok" record is followed by a refusal whose detail reads
"not served: supersedes <log> seq <n>"; that record was not served. Failed
uploads are marked the same way ("not stored: supersedes ...").

Example: every refused redemption in the last day, for people
  idvault audit query --store /var/lib/idvault --event redeem --outcome refused --since -24h --format table

Example: everything one principal did in a window, for jq
  idvault audit query --principal reviewer-7 --since 2021-04-20 --until 2021-04-27 | jq .object
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		ff := addFilterFlags(fs)
		limit := fs.Int("limit", 0, "stop after `N` records (0: no limit)")
		return func(ctx context.Context, c *cli) int {
			return c.query(ctx, ff, *limit)
		}
	},
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
	}
}

// tableFlushRows bounds what the table writer holds: columns are aligned
// within blocks of this many rows, so a huge query still streams.
const tableFlushRows = 1000

// tableTime is the time format of table output (milliseconds; JSON keeps
// nanoseconds).
const tableTime = "2006-01-02T15:04:05.000Z07:00"

func (c *cli) query(ctx context.Context, ff *filterFlags, limit int) int {
	f, err := ff.filter(c.now)
	if err != nil {
		return c.usageError(err.Error())
	}
	if limit < 0 {
		return c.usageError("--limit must not be negative")
	}
	spec, err := c.storeSpecFrom(*ff.store)
	if err != nil {
		return c.usageError(err.Error())
	}
	st, err := openStore(ctx, spec, c.env)
	if err != nil {
		return c.fail(err)
	}
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	var emit func(audit.Record) error
	var finish func() error
	switch *ff.format {
	case "table":
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		header := "TIME\tLOG\tSEQ\tEVENT\tOUTCOME\tREASON\tOBJECT\tPRINCIPAL\tPURPOSE\tTOKEN-ID\tREMOTE\tSUBJECT\tDETAIL\n"
		io.WriteString(tw, header)
		rows := 0
		emit = func(r audit.Record) error {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				r.Time.UTC().Format(tableTime), cell(r.Log), r.Seq, cell(string(r.Event)), cell(string(r.Outcome)),
				cell(r.Reason), cell(r.Object), cell(r.Principal), cell(r.Purpose), cell(r.TokenID),
				cell(r.RemoteAddr), cell(r.Subject), cell(r.Detail))
			if rows++; err == nil && rows%tableFlushRows == 0 {
				err = tw.Flush()
			}
			return err
		}
		finish = tw.Flush
	default:
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		emit = func(r audit.Record) error { return enc.Encode(toJSONRecord(r)) }
		finish = func() error { return nil }
	}
	n := 0
	for r, err := range audit.Scan(ctx, st, f) {
		if err != nil {
			finish()
			out.Flush()
			return c.fail(fmt.Errorf("reading the audit log: %w", err))
		}
		if err := emit(r); err != nil {
			return c.fail(err)
		}
		if n++; limit > 0 && n >= limit {
			break
		}
	}
	if err := finish(); err != nil {
		return c.fail(err)
	}
	if err := out.Flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
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
