package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

var statsCommand = &command{
	path:    "audit stats",
	summary: "count grants, redemptions, refusals and documents per principal per hour",
	usage:   "audit stats [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--since TIME] [--until TIME] [--principal PRINCIPAL] [--object ID] [--event EVENT] [--outcome OUTCOME] [--log LOG] [--unverified] [--format FORMAT]",
	help: `Counts, per principal and per hour (UTC), over the records that match the
filters (the same as for query):

  grants       grant records with outcome ok (tokens issued)
  redemptions  redeem records with outcome ok: images released, exactly
               (a replay, a deleted or tampered document is a refusal)
  refusals     records with outcome refused, of any event
  documents    distinct object IDs in the principal's grant and redeem
               records of that hour, whatever their outcome

and the totals over the whole range (documents there: distinct over the
range). Hours and principals with none of these are left out. A principal
whose documents per hour jumps is what bulk exfiltration looks like. Stats
counts the records query shows (verified ones; --unverified adds the
others). It holds one set of object IDs per row in memory.

--format json writes one JSON object: {"rows": [...], "total": {...}}. Each
row carries hour (RFC 3339, UTC), principal, grants, redemptions, refusals
and documents; the total carries grants, redemptions, refusals and
documents, and nothing shaped like a principal. --format table ends with a
TOTAL line.

Example:
  idvault audit stats --store /var/lib/idvault --since -7d --format table
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		ff := addFilterFlags(fs)
		return func(ctx context.Context, c *cli) int {
			return c.stats(ctx, ff)
		}
	},
}

type statsKey struct {
	hour      int64 // Unix seconds of the hour's start
	principal string
}

type statsRow struct {
	grants, redemptions, refusals int64
	docs                          map[string]struct{}
}

// statsLine is one row. The JSON field names are part of the CLI's
// contract.
type statsLine struct {
	Hour        string `json:"hour"`
	Principal   string `json:"principal"`
	Grants      int64  `json:"grants"`
	Redemptions int64  `json:"redemptions"`
	Refusals    int64  `json:"refusals"`
	Documents   int    `json:"documents"`
}

// statsTotal is the totals over the whole range.
type statsTotal struct {
	Grants      int64 `json:"grants"`
	Redemptions int64 `json:"redemptions"`
	Refusals    int64 `json:"refusals"`
	Documents   int   `json:"documents"`
}

// statsReport is what --format json writes: the rows and, apart from them,
// the totals.
type statsReport struct {
	Rows  []statsLine `json:"rows"`
	Total statsTotal  `json:"total"`
}

// statsAgg accumulates the rows.
type statsAgg struct {
	rows    map[statsKey]*statsRow
	total   statsRow
	allDocs map[string]struct{}
}

func newStatsAgg() *statsAgg {
	return &statsAgg{rows: map[statsKey]*statsRow{}, allDocs: map[string]struct{}{}}
}

func (a *statsAgg) add(r audit.Record) {
	grant := r.Event == audit.EventGrant && r.Outcome == audit.OutcomeOK
	redeem := r.Event == audit.EventRedeem && r.Outcome == audit.OutcomeOK
	refused := r.Outcome == audit.OutcomeRefused
	doc := (r.Event == audit.EventGrant || r.Event == audit.EventRedeem) && r.Object != ""
	if !grant && !redeem && !refused && !doc {
		return
	}
	k := statsKey{hour: r.Time.UTC().Truncate(time.Hour).Unix(), principal: r.Principal}
	row := a.rows[k]
	if row == nil {
		row = &statsRow{docs: map[string]struct{}{}}
		a.rows[k] = row
	}
	for _, s := range []*statsRow{row, &a.total} {
		if grant {
			s.grants++
		}
		if redeem {
			s.redemptions++
		}
		if refused {
			s.refusals++
		}
	}
	if doc {
		row.docs[r.Object] = struct{}{}
		a.allDocs[r.Object] = struct{}{}
	}
}

// report returns the rows sorted by hour then principal, and the totals.
func (a *statsAgg) report() statsReport {
	keys := make([]statsKey, 0, len(a.rows))
	for k := range a.rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y statsKey) int {
		return cmp.Or(cmp.Compare(x.hour, y.hour), cmp.Compare(x.principal, y.principal))
	})
	rep := statsReport{Rows: make([]statsLine, 0, len(keys)), Total: statsTotal{
		Grants:      a.total.grants,
		Redemptions: a.total.redemptions,
		Refusals:    a.total.refusals,
		Documents:   len(a.allDocs),
	}}
	for _, k := range keys {
		r := a.rows[k]
		rep.Rows = append(rep.Rows, statsLine{
			Hour:        time.Unix(k.hour, 0).UTC().Format(time.RFC3339),
			Principal:   k.principal,
			Grants:      r.grants,
			Redemptions: r.redemptions,
			Refusals:    r.refusals,
			Documents:   len(r.docs),
		})
	}
	return rep
}

func (c *cli) stats(ctx context.Context, ff *filterFlags) int {
	f, err := ff.filter(c.now)
	if err != nil {
		return c.usageError(err.Error())
	}
	if *ff.format != "json" && *ff.format != "table" {
		return c.usageError("--format must be json or table")
	}
	st, key, code := c.openKeyedURL(ctx, *ff.store, ff.keys)
	if code != 0 {
		return code
	}
	src, code := c.openSource(ctx, st, key, f, *ff.unverified, cursor{}, false)
	if code != 0 {
		return code
	}
	agg := newStatsAgg()
	for r, err := range src.reader().records(ctx) {
		if err != nil {
			return c.fail(fmt.Errorf("reading the audit log: %w", err))
		}
		agg.add(r.Record)
	}
	out := bufio.NewWriter(c.stdout)
	if *ff.format == "table" {
		err = writeStatsTable(out, agg.report())
	} else {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		err = enc.Encode(agg.report())
	}
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

func writeStatsTable(w io.Writer, rep statsReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "HOUR\tPRINCIPAL\tGRANTS\tREDEMPTIONS\tREFUSALS\tDOCUMENTS\n")
	for _, l := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", l.Hour, cell(l.Principal), l.Grants, l.Redemptions, l.Refusals, l.Documents)
	}
	t := rep.Total
	fmt.Fprintf(tw, "TOTAL\t(all)\t%d\t%d\t%d\t%d\n", t.Grants, t.Redemptions, t.Refusals, t.Documents)
	return tw.Flush()
}
