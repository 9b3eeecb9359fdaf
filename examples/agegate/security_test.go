package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault"
)

// runFlow uploads for alice, lets rita view the image twice (the second
// refused) and approve it. It returns the document ID.
func runFlow(t *testing.T, te *testEnv) string {
	t.Helper()
	rita, link, id := te.queueOne("member-alice", licencePNG(t, 10))
	// The clock moves between steps: a release record carries the time of
	// its spend but reaches the log when it is folded (within 200 ms), so
	// records of one instant have no order.
	rita.get(link)
	te.clock.Advance(time.Second)
	rita.get(link)
	te.clock.Advance(time.Second)
	rita.approve(id, "1988-08-08")
	return id
}

var rowPattern = regexp.MustCompile(`<tr class="ev-([a-z0-9-]+) out-([a-z]+)"><td>[^<]*</td><td>[a-z-]+</td><td>[a-z]+</td><td>([a-z-]*)</td><td><code>([0-9a-f…]*)</code></td><td>([^<]*)</td>`)

type row struct{ event, outcome, reason, object, principal string }

func eventRows(page string) []row {
	var out []row
	for _, m := range rowPattern.FindAllStringSubmatch(page, -1) {
		out = append(out, row{m[1], m[2], m[3], m[4], m[5]})
	}
	return out
}

// TestSecurityPage: the auditor sees every step of the flow, verified, the
// filters work, and the chart counts rita's views.
func TestSecurityPage(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	id := runFlow(t, te)
	ada := te.login("auditor-ada")
	page := ada.get("/security")
	if page.status != http.StatusOK {
		t.Fatalf("status %d", page.status)
	}
	if !strings.Contains(page.body, `id="verify-status">Verified:`) {
		t.Errorf("audit log not shown as verified:\n%s", page.body)
	}
	want := []row{
		{"put", "ok", "", id[:8] + "…", ""},
		{"grant", "ok", "", id[:8] + "…", "reviewer-rita"},
		{"redeem", "ok", "", id[:8] + "…", "reviewer-rita"},
		{"redeem", "refused", "token-replayed", id[:8] + "…", "reviewer-rita"},
		{"delete", "ok", "requested", id[:8] + "…", ""},
	}
	rows := eventRows(page.body)
	for _, w := range want {
		found := false
		for _, r := range rows {
			if r.event == w.event && r.outcome == w.outcome && r.reason == w.reason && r.object == w.object && (w.principal == "" || r.principal == w.principal) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %+v among the %d event rows", w, len(rows))
		}
	}
	// Newest first: the delete comes first, the put after every grant.
	lastGrant, put := -1, -1
	for i, r := range rows {
		switch r.event {
		case "grant":
			lastGrant = i
		case "put":
			put = i
		}
	}
	if len(rows) < 2 || rows[0].event != "delete" || put < lastGrant {
		t.Errorf("rows not newest first: %+v", rows)
	}
	if !strings.Contains(page.body, `<rect class="bar"`) || !strings.Contains(page.body, "reviewer-rita, ") {
		t.Errorf("chart has no bar for rita")
	}
	// The chart counts images served, exactly: one view, one replay refused.
	vol, err := te.app.reviewVolume(context.Background(), te.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	views := 0
	if v := vol["reviewer-rita"]; v != nil {
		for _, n := range v {
			views += n
		}
	}
	if views != 1 {
		t.Errorf("chart counts %d views of rita, want 1 (one image served, one replay refused)", views)
	}
	// No raw member ID, no token on the auditor's page.
	if strings.Contains(page.body, "member-alice") || strings.Contains(page.body, "idv1_") {
		t.Errorf("security page shows a member ID or a token")
	}

	filters := []struct {
		query string
		check func(row) bool
		min   int
	}{
		{"event=redeem", func(r row) bool { return r.event == "redeem" }, 2},
		{"event=redeem&outcome=refused", func(r row) bool { return r.event == "redeem" && r.outcome == "refused" }, 1},
		{"principal=reviewer-rita", func(r row) bool { return r.principal == "reviewer-rita" }, 3},
		{"outcome=ok&event=delete", func(r row) bool { return r.event == "delete" && r.outcome == "ok" }, 1},
		{"principal=nobody", func(r row) bool { return false }, 0},
	}
	for _, f := range filters {
		rows := eventRows(ada.get("/security?" + f.query).body)
		if len(rows) < f.min {
			t.Errorf("%s: %d rows, want at least %d", f.query, len(rows), f.min)
		}
		for _, r := range rows {
			if !f.check(r) {
				t.Errorf("%s: row %+v does not match", f.query, r)
			}
		}
	}
	// Hostile filter values are ignored or escaped, never echoed raw.
	r := ada.get("/security?event=%3Cscript%3E&outcome=%3Cb%3E&principal=%3Cscript%3Ealert(1)%3C/script%3E")
	if r.status != http.StatusOK || strings.Contains(r.body, "<script>") {
		t.Errorf("hostile filter: status %d, raw markup echoed: %v", r.status, strings.Contains(r.body, "<script>"))
	}
}

// TestSecurityPageTampered: an edited audit batch shows as tampered.
func TestSecurityPageTampered(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	runFlow(t, te)
	// Close the vault so that its final checkpoint covers every record.
	if err := te.env.Close(); err != nil {
		t.Fatal(err)
	}
	var batch string
	filepath.WalkDir(filepath.Join(te.dir, "store", "audit"), func(path string, d os.DirEntry, err error) error {
		// A record batch: not a checkpoint, not a lease or registry entry.
		if err == nil && !d.IsDir() && !strings.Contains(path, "checkpoints") && !strings.Contains(path, "/_") && batch == "" {
			batch = path
		}
		return nil
	})
	b, err := os.ReadFile(batch)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("reviewer-rita"))
	if i < 0 {
		i = len(b) - 1
	}
	b[i] ^= 1
	if err := os.WriteFile(batch, b, 0o600); err != nil {
		t.Fatal(err)
	}
	vs := te.app.verify(context.Background(), time.Now())
	if vs.OK || len(vs.Problems) == 0 {
		t.Fatalf("verify after tampering: %+v", vs)
	}
	var buf bytes.Buffer
	if err := te.app.pages["security"].ExecuteTemplate(&buf, "layout", page{Title: "Security", Data: securityPage{Verify: vs}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "TAMPERED") {
		t.Errorf("page does not say tampered")
	}
}

// TestCanaries: the app plants nothing at startup (a canary written in
// the second the vault opens is found by its timestamp); canaries the
// vault planted hide in the queue as hidden links; a script that follows
// every document link touches one, which raises an alert and freezes the
// account until an auditor unfreezes it.
func TestCanaries(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	if n := te.countObjects(); n != 0 {
		t.Fatalf("%d documents after startup, want none", n)
	}
	// The vault plants canaries among uploads on their rhythm; to have
	// two now, plant them the old way.
	//lint:ignore SA1019 seeding the queue deterministically; the app itself never plants
	if _, err := te.v.Admin().PlantCanaries(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	te.login("member-alice").upload(licencePNG(t, 11), "image/png")
	rita := te.login("reviewer-rita")
	urls, ids, page := rita.reviewQueue()
	if len(urls) != 1 || len(ids) != 1 {
		t.Fatalf("queue shows %d images, %d items: canaries must not be shown", len(urls), len(ids))
	}
	if len(te.app.alerts.recent()) != 0 {
		t.Fatalf("loading the queue raised an alert")
	}
	links := regexp.MustCompile(`<li hidden><a href="(/review/doc/[0-9a-f]{32})"`).FindAllStringSubmatch(page, -1)
	if len(links) != 1 { // one per vault.DefaultCanaryRate listed, at least one
		t.Fatalf("%d hidden canary links, want 1", len(links))
	}
	// The "script": follow a hidden link. The page looks like any review.
	r := rita.get(links[0][1])
	if r.status != http.StatusOK || !imgURLPattern.MatchString(r.body) {
		t.Fatalf("canary page: status %d", r.status)
	}
	alerts := te.app.alerts.recent()
	kinds := map[vault.AlertKind]bool{}
	for _, a := range alerts {
		kinds[a.Kind] = true
		if a.Principal != "reviewer-rita" {
			t.Errorf("alert %s names %q", a.Kind, a.Principal)
		}
	}
	if !kinds[vault.AlertCanary] || !kinds[vault.AlertFrozen] {
		t.Fatalf("alerts %v, want canary-touched and principal-frozen", kinds)
	}
	// Frozen: no more documents for rita, raj is unaffected.
	if r := rita.get("/review"); r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "frozen") {
		t.Fatalf("frozen reviewer's queue: status %d, want 429 saying frozen", r.status)
	}
	if urls, _, _ := te.login("reviewer-raj").reviewQueue(); len(urls) != 1 {
		t.Fatalf("raj's queue: %d", len(urls))
	}

	ada := te.login("auditor-ada")
	sec := ada.get("/security").body
	for _, want := range []string{"canary-touched", "principal-frozen", `name="principal" value="reviewer-rita"`, "1×"} {
		if !strings.Contains(sec, want) {
			t.Errorf("security page lacks %q", want)
		}
	}
	if r := ada.postForm("/security/unfreeze", url.Values{"principal": {"reviewer-rita"}}); r.status != http.StatusSeeOther {
		t.Fatalf("unfreeze: status %d", r.status)
	}
	if urls, _, _ := rita.reviewQueue(); len(urls) != 1 {
		t.Fatalf("after unfreeze: %d", len(urls))
	}
	if strings.Contains(ada.get("/security").body, `name="principal" value="reviewer-rita"`) {
		t.Errorf("rita still listed as frozen after unfreeze")
	}
	// Canaries expire like documents: an expired one is listed no more.
	te.clock.Advance(73 * time.Hour)
	te.login("member-bob").upload(licencePNG(t, 12), "image/png")
	if _, _, page := te.login("reviewer-raj").reviewQueue(); strings.Contains(page, "<li hidden>") {
		t.Errorf("an expired canary is still listed")
	}
}

// TestVolumeChart: bars scale to the peak, land in their hour, and an
// empty log draws no bar.
func TestVolumeChart(t *testing.T) {
	now := time.Date(2026, 5, 1, 14, 30, 0, 0, time.UTC)
	empty := volumeChart(volume{}, now)
	if !empty.Empty || len(empty.Bars) != 0 || len(empty.XLabels) == 0 {
		t.Errorf("empty chart: %+v", empty)
	}
	v := volume{"reviewer-a": new([chartHours]int), "reviewer-b": new([chartHours]int)}
	v["reviewer-a"][chartHours-1] = 10
	v["reviewer-b"][chartHours-1] = 5
	v["reviewer-b"][0] = 1
	c := volumeChart(v, now)
	if len(c.Bars) != 3 || len(c.Legend) != 2 {
		t.Fatalf("bars %d legend %d", len(c.Bars), len(c.Legend))
	}
	var a, b *chartBar
	for i := range c.Bars {
		switch {
		case strings.HasPrefix(c.Bars[i].Title, "reviewer-a"):
			a = &c.Bars[i]
		case strings.HasPrefix(c.Bars[i].Title, "reviewer-b") && strings.HasSuffix(c.Bars[i].Title, ": 5 image(s) viewed"):
			b = &c.Bars[i]
		}
	}
	if a == nil || b == nil {
		t.Fatalf("bars: %+v", c.Bars)
	}
	if a.H != c.PlotH || b.H != c.PlotH/2 || a.Y+a.H != c.PlotY+c.PlotH {
		t.Errorf("heights %d and %d in a %d-high plot", a.H, b.H, c.PlotH)
	}
	if group := c.PlotW / chartHours; a.X < c.PlotX+group*(chartHours-1) || a.X+a.W > c.PlotX+c.PlotW {
		t.Errorf("the current hour's bar at x=%d is not in the last slot", a.X)
	}
	for _, bar := range c.Bars {
		if bar.X < c.PlotX || bar.X+bar.W > c.PlotX+c.PlotW || bar.H <= 0 {
			t.Errorf("bar outside the plot: %+v", bar)
		}
	}
	if got := fmt.Sprint(c.YLabels[len(c.YLabels)-1].Text); got != "10" {
		t.Errorf("top y label %q, want 10", got)
	}
}
