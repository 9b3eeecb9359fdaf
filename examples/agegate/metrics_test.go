package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape GETs /metrics without a session (as Prometheus does) and returns
// the samples as "name{labels}" -> value.
func scrape(t *testing.T, te *testEnv) map[string]float64 {
	t.Helper()
	r := te.anonymous().get("/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", r.status)
	}
	if strings.Contains(r.body, "idv1_") || strings.Contains(r.body, "member-") || strings.Contains(r.body, "reviewer-") {
		t.Fatal("/metrics holds a token or an identity")
	}
	out := map[string]float64{}
	for _, line := range strings.Split(r.body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sample is the value of the series of name whose labels include every
// label given as `k="v"` (0 when absent).
func sample(m map[string]float64, name string, labels ...string) float64 {
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			return v
		}
	}
	return 0
}

// TestMetrics: curl /metrics on the running app shows the vault's counters
// move after an upload and a review, each by what happened.
func TestMetrics(t *testing.T) {
	te := newTestEnv(t, envOptions{})
	before := scrape(t, te)

	img := licencePNG(t, 7)
	rita, link, id := te.queueOne("member-alice", img)
	if r := rita.get(link); r.status != http.StatusOK {
		t.Fatalf("image: %d", r.status)
	}
	if r := rita.get(link); r.status != http.StatusNotFound {
		t.Fatalf("replay: %d", r.status)
	}
	rita.approve(id, "1970-01-01")
	// Release records are folded into the audit log off the client's path.
	if err := te.v.Admin().SyncAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, te)

	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"idvault_puts_total", nil, 1},
		{"idvault_grants_total", nil, 1},
		{"idvault_redemptions_total", nil, 1}, // the view; the replay is a refusal only
		{"idvault_refusals_total", []string{`event="redeem"`, `reason="token-replayed"`}, 1},
		{"idvault_deletions_total", []string{`event="delete"`}, 1},
	} {
		if got := sample(after, c.name, c.labels...) - sample(before, c.name, c.labels...); got != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.delta)
		}
	}
	// The service is named (not unknown_service), and the vault's meter
	// carries its scope.
	if sample(after, "target_info", `service_name="idvault-agegate"`) != 1 {
		t.Errorf("target_info lacks service_name=\"idvault-agegate\": %v", keysWith(after, "target_info"))
	}
	if n := sample(after, "idvault_audit_append_duration_seconds_count", `outcome="ok"`) - sample(before, "idvault_audit_append_duration_seconds_count", `outcome="ok"`); n < 6 {
		t.Errorf("audit append latency: %v more observations, want one per record (at least 6)", n)
	}
}

func keysWith(m map[string]float64, prefix string) []string {
	var ks []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	return ks
}
