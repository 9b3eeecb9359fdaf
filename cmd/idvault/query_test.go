package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// queryFields are the JSON field names query promises, in order.
var queryFields = []string{"time", "log", "seq", "event", "outcome", "reason", "object", "principal", "purpose", "token_id", "remote_addr", "subject", "detail", "verified"}

// decodeLines parses JSON lines strictly into records, checking that every
// line has exactly the promised fields.
func decodeLines(t *testing.T, out string) []jsonRecord {
	t.Helper()
	var recs []jsonRecord
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if len(m) != len(queryFields) {
			t.Fatalf("line has %d fields, want %d: %s", len(m), len(queryFields), line)
		}
		for _, f := range queryFields {
			if _, ok := m[f]; !ok {
				t.Fatalf("line lacks %q: %s", f, line)
			}
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var r jsonRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if ts, err := time.Parse(time.RFC3339Nano, r.Time); err != nil || ts.Location() != time.UTC || !strings.HasSuffix(r.Time, "Z") {
			t.Fatalf("time %q is not RFC 3339 UTC: %v", r.Time, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// fixtureRecords returns the fixture's records as query should print them:
// in time order (ties: log, then seq).
func fixtureRecords(fx *fixture) []jsonRecord {
	var all []jsonRecord
	for i, recs := range [][]audit.Record{fixtureLogA(), fixtureLogB()} {
		for seq, r := range recs {
			r.Log, r.Seq = fx.logs[i], int64(seq)
			all = append(all, toJSONRecord(r))
		}
	}
	slices.SortStableFunc(all, func(a, b jsonRecord) int {
		ta, _ := time.Parse(time.RFC3339Nano, a.Time)
		tb, _ := time.Parse(time.RFC3339Nano, b.Time)
		if c := ta.Compare(tb); c != 0 {
			return c
		}
		if c := strings.Compare(a.Log, b.Log); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	})
	return all
}

func TestQuery(t *testing.T) {
	fx := newFixture(t)
	all := fixtureRecords(fx)
	at := func(m int) string { return base.Add(time.Duration(m) * time.Minute).Format(time.RFC3339) }
	tests := []struct {
		name  string
		args  []string
		want  func(r jsonRecord) bool
		count int // the number of records expected, stated independently
	}{
		{"all", nil, func(jsonRecord) bool { return true }, 14},
		{"principal", []string{"--principal", "reviewer-1"}, func(r jsonRecord) bool { return r.Principal == "reviewer-1" }, 5},
		{"principal with escapes", []string{"--principal", evilP}, func(r jsonRecord) bool { return r.Principal == evilP }, 1},
		{"event", []string{"--event", "grant"}, func(r jsonRecord) bool { return r.Event == "grant" }, 5},
		{"refused redemptions", []string{"--event", "redeem", "--outcome", "refused"}, func(r jsonRecord) bool { return r.Event == "redeem" && r.Outcome == "refused" }, 3},
		{"object", []string{"--object", obj3}, func(r jsonRecord) bool { return r.Object == obj3 }, 5},
		{"object upper case", []string{"--object", strings.ToUpper(obj3)}, func(r jsonRecord) bool { return r.Object == obj3 }, 5},
		{"log", []string{"--log", fx.logs[1]}, func(r jsonRecord) bool { return r.Log == fx.logs[1] }, 3},
		{"since", []string{"--since", at(60)}, func(r jsonRecord) bool { return r.Time >= at(60) }, 7},
		{"until", []string{"--until", at(60)}, func(r jsonRecord) bool { return r.Time < at(60) }, 7},
		{"window", []string{"--since", at(6), "--until", at(61)}, func(r jsonRecord) bool { return r.Time >= at(6) && r.Time < at(61) }, 4},
		{"date", []string{"--since", "2021-04-20", "--until", "2021-04-21"}, func(jsonRecord) bool { return true }, 14},
		{"relative, everything", []string{"--since", "-876000h"}, func(jsonRecord) bool { return true }, 14},
		{"relative, nothing", []string{"--since", "-1h"}, func(jsonRecord) bool { return false }, 0},
		{"no match", []string{"--principal", "nobody"}, func(jsonRecord) bool { return false }, 0},
		{"combined", []string{"--principal", "reviewer-2", "--object", obj3, "--outcome", "ok"}, func(r jsonRecord) bool {
			return r.Principal == "reviewer-2" && r.Object == obj3 && r.Outcome == "ok"
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"audit", "query", "--store", fx.dir}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("want exit 0, got %v", r)
			}
			got := decodeLines(t, r.stdout)
			var want []jsonRecord
			for _, rec := range all {
				if tt.want(rec) {
					want = append(want, rec)
				}
			}
			if len(want) != tt.count {
				t.Fatalf("test table inconsistent: predicate selects %d, count says %d", len(want), tt.count)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d records, want %d:\n%s", len(got), len(want), r.stdout)
			}
			if strings.ContainsRune(r.stdout, 0x1b) {
				t.Fatal("raw escape character in the output")
			}
		})
	}
}

func TestQueryLimit(t *testing.T) {
	fx := newFixture(t)
	all := fixtureRecords(fx)
	for _, n := range []int{1, 2, 13, 14, 100} {
		r := runCLI(t, nil, "audit", "query", "--store", fx.dir, "--limit", itoa(n))
		if r.code != exitOK {
			t.Fatalf("limit %d: %v", n, r)
		}
		got := decodeLines(t, r.stdout)
		if want := all[:min(n, len(all))]; !slices.Equal(got, want) {
			t.Fatalf("limit %d: got %d records, want %d", n, len(got), len(want))
		}
	}
}

func TestQueryTable(t *testing.T) {
	fx := newFixture(t)
	lines, r := outputLines(t, nil, "audit", "query", "--store", fx.dir, "--format", "table")
	if len(lines) != 15 {
		t.Fatalf("want a header and 14 rows, got %d lines:\n%s", len(lines), r.stdout)
	}
	header := lines[0]
	cols := []string{"TIME", "LOG", "SEQ", "EVENT", "OUTCOME", "REASON", "OBJECT", "PRINCIPAL", "PURPOSE", "TOKEN-ID", "REMOTE", "SUBJECT", "DETAIL"}
	var starts []int
	for _, c := range cols {
		i := strings.Index(header, c)
		if i < 0 {
			t.Fatalf("header lacks %s: %q", c, header)
		}
		starts = append(starts, i)
	}
	// Aligned: every cell of every row begins where its header begins,
	// after at least one space.
	for _, line := range lines[1:] {
		for j, s := range starts {
			if len(line) <= s || line[s] == ' ' || (s > 0 && line[s-1] != ' ') {
				t.Fatalf("column %s not aligned in row:\n%s\n%s", cols[j], header, line)
			}
		}
	}
	if !strings.Contains(r.stdout, "2021-04-20T10:06:00.000Z") || !strings.Contains(r.stdout, "192.0.2.7:5555") {
		t.Errorf("table lacks expected cells:\n%s", r.stdout)
	}
	// A principal with a tab and a terminal escape is shown quoted.
	if !strings.Contains(r.stdout, `"evil\t\x1b[31mred"`) || strings.ContainsRune(r.stdout, 0x1b) {
		t.Errorf("control characters not escaped:\n%s", r.stdout)
	}
}

func TestCell(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "-"},
		{"reviewer 1", "reviewer 1"},
		{"日本語", "日本語"},
		{"a\tb", `"a\tb"`},
		{"a\nb", `"a\nb"`},
		{"\x1b[2J", `"\x1b[2J"`},
		{"a\u202eb", `"a\u202eb"`}, // bidi override
	} {
		if got := cell(tt.in); got != tt.want {
			t.Errorf("cell(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestStats(t *testing.T) {
	fx := newFixture(t)
	h := func(hh int) string { return time.Date(2021, 4, 20, hh, 0, 0, 0, time.UTC).Format(time.RFC3339) }
	full := []statsLine{
		{Hour: h(10), Principal: "reviewer-1", Grants: 2, Redemptions: 1, Refusals: 0, Documents: 2},
		{Hour: h(10), Principal: "reviewer-2", Grants: 0, Redemptions: 0, Refusals: 1, Documents: 1},
		{Hour: h(11), Principal: evilP, Grants: 0, Redemptions: 0, Refusals: 1, Documents: 1},
		{Hour: h(11), Principal: "reviewer-2", Grants: 1, Redemptions: 1, Refusals: 1, Documents: 1},
		{Hour: h(12), Principal: "reviewer-1", Grants: 1, Redemptions: 0, Refusals: 1, Documents: 2},
	}
	tests := []struct {
		name string
		args []string
		want statsReport
	}{
		{"all", nil, statsReport{full, statsTotal{Grants: 4, Redemptions: 2, Refusals: 4, Documents: 3}}},
		{"one principal", []string{"--principal", "reviewer-1"}, statsReport{[]statsLine{full[0], full[4]},
			statsTotal{Grants: 3, Redemptions: 1, Refusals: 1, Documents: 3}}},
		{"one hour", []string{"--since", h(11), "--until", h(12)}, statsReport{[]statsLine{full[2], full[3]},
			statsTotal{Grants: 1, Redemptions: 1, Refusals: 2, Documents: 2}}},
		{"nothing", []string{"--principal", "nobody"}, statsReport{[]statsLine{}, statsTotal{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"audit", "stats", "--store", fx.dir}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("want exit 0, got %v", r)
			}
			// One JSON object: rows, and the totals apart, shaped unlike a row.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || len(raw) != 2 || raw["rows"] == nil || raw["total"] == nil {
				t.Fatalf("not {rows, total}: %v\n%s", err, r.stdout)
			}
			var total map[string]any
			json.Unmarshal(raw["total"], &total)
			for _, k := range []string{"hour", "principal"} {
				if _, ok := total[k]; ok {
					t.Fatalf("the total has a %q like a row: %s", k, raw["total"])
				}
			}
			var got statsReport
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%v\n%s", err, r.stdout)
			}
			if !slices.Equal(got.Rows, tt.want.Rows) || got.Total != tt.want.Total {
				t.Fatalf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestStatsTable(t *testing.T) {
	fx := newFixture(t)
	lines, r := outputLines(t, nil, "audit", "stats", "--store", fx.dir, "--format", "table")
	if len(lines) != 7 {
		t.Fatalf("want header, 5 rows and a total, got:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"HOUR", "PRINCIPAL", "GRANTS", "REDEMPTIONS", "REFUSALS", "DOCUMENTS"}) {
		t.Fatalf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); !slices.Equal(f, []string{"2021-04-20T10:00:00Z", "reviewer-1", "2", "1", "0", "2"}) {
		t.Fatalf("first row %q", lines[1])
	}
	if f := strings.Fields(lines[6]); !slices.Equal(f, []string{"TOTAL", "(all)", "4", "2", "4", "3"}) {
		t.Fatalf("total row %q", lines[6])
	}
	col := strings.Index(lines[0], "GRANTS")
	for _, l := range lines[1:] {
		if l[col] == ' ' || l[col-1] != ' ' {
			t.Fatalf("GRANTS column not aligned:\n%s", r.stdout)
		}
	}
	if bytes.ContainsRune([]byte(r.stdout), 0x1b) {
		t.Fatal("raw escape in the table")
	}
}
