package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idvault/idvault/vault/audit"
)

// vaultSourceLiterals returns the string values the root module's
// non-test code gives to values of type typeName (audit.Event or
// audit.Outcome): typed constants, conversions of literals, and literals
// in Record fields of that name.
func vaultSourceLiterals(t *testing.T, typeName string) []string {
	t.Helper()
	root := filepath.Join("..", "..", "vault")
	seen := map[string]bool{}
	isType := func(e ast.Expr) bool {
		switch x := e.(type) {
		case *ast.Ident:
			return x.Name == typeName
		case *ast.SelectorExpr:
			id, ok := x.X.(*ast.Ident)
			return ok && id.Name == "audit" && x.Sel.Name == typeName
		}
		return false
	}
	lit := func(e ast.Expr) (string, bool) {
		b, ok := e.(*ast.BasicLit)
		if !ok || b.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(b.Value)
		return s, err == nil
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" || (path != root && fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir // another module (redislimiter) has its own events or none
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.ValueSpec:
				if x.Type != nil && isType(x.Type) {
					for _, v := range x.Values {
						if s, ok := lit(v); ok {
							seen[s] = true
						}
					}
				}
			case *ast.CallExpr:
				if isType(x.Fun) && len(x.Args) == 1 {
					if s, ok := lit(x.Args[0]); ok {
						seen[s] = true
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := x.Key.(*ast.Ident); ok && k.Name == typeName {
					if s, ok := lit(x.Value); ok {
						seen[s] = true
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatalf("found no %s values in %s: the scan is broken", typeName, root)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestEveryEventAccepted: every event the vault writes is filterable with
// --event and has an OCSF mapping; an event constant added to the vault
// and not here fails this test.
func TestEveryEventAccepted(t *testing.T) {
	events := vaultSourceLiterals(t, "Event")
	for _, want := range []string{"put", "redeem", "decide", "subject-access"} {
		if !slices.Contains(events, want) {
			t.Fatalf("the scan of the vault's source missed %q (found %v)", want, events)
		}
	}
	g := newGapStore(t)
	for _, ev := range events {
		if _, ok := eventActivities[audit.Event(ev)]; !ok {
			t.Errorf("event %q is written by the vault but has no OCSF activity (eventActivities)", ev)
		}
		r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--event", ev)
		if r.code != exitOK {
			t.Errorf("--event %s refused: %v", ev, r)
		}
	}
	for ev := range eventActivities {
		if !slices.Contains(events, string(ev)) {
			t.Errorf("eventActivities lists %q, which the vault does not write", ev)
		}
	}
}

// TestEveryOutcomeAccepted: the same for --outcome.
func TestEveryOutcomeAccepted(t *testing.T) {
	outcomes := vaultSourceLiterals(t, "Outcome")
	g := newGapStore(t)
	for _, o := range outcomes {
		r := runCLI(t, nil, "audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--outcome", o)
		if r.code != exitOK {
			t.Errorf("--outcome %s refused: %v", o, r)
		}
	}
	if !slices.Equal(sortedCopy(knownOutcomes), outcomes) {
		t.Errorf("knownOutcomes %v, the vault writes %v", knownOutcomes, outcomes)
	}
}

// backInTime is a store with two logs where log A goes back in time (a
// release record folded after later records), as the vault writes them.
type backInTime struct {
	*gapStore
	a, b []audit.Record
}

func newBackInTime(t *testing.T) *backInTime {
	t.Helper()
	g := newKeyedStore(t, "idvault-audit-order")
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	bt := &backInTime{gapStore: g}
	bt.a = []audit.Record{
		{Time: at(10), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Principal: "r-1", Object: obj1},
		{Time: at(20), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Principal: "r-1", Object: obj2},
		{Time: at(5), Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "r-0", Object: obj3, Detail: "folded late"},
		{Time: at(30), Event: audit.EventGrant, Outcome: audit.OutcomeOK, Principal: "r-1", Object: obj3},
		{Time: at(12), Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "r-1", Object: obj1, Detail: "folded late"},
	}
	bt.b = []audit.Record{
		{Time: at(15), Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "token-replayed", Principal: "r-2"},
		{Time: at(25), Event: audit.EventSweep, Outcome: audit.OutcomeOK, Principal: "cron"},
	}
	for _, recs := range [][]audit.Record{bt.a, bt.b} {
		g.logs = append(g.logs, writeClosedLog(t, g.st, g.signer, audit.AppenderOptions{CheckpointEvery: time.Hour, CheckpointRecords: 2}, recs...))
	}
	return bt
}

func (bt *backInTime) total() int { return len(bt.a) + len(bt.b) }

func (bt *backInTime) query(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, nil, append([]string{"audit", "query", "--store", bt.dir, "--verifier-key", bt.verifier}, args...)...)
}

// TestQueryTimeOrder: records of several logs come out in time order even
// where a log goes back in time, as the help promises.
func TestQueryTimeOrder(t *testing.T) {
	bt := newBackInTime(t)
	r := bt.query(t)
	if r.code != exitOK {
		t.Fatal(r)
	}
	recs := decodeLines(t, r.stdout)
	if len(recs) != bt.total() {
		t.Fatalf("%d records, want %d", len(recs), bt.total())
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Time < recs[i-1].Time {
			t.Fatalf("record %d (%s) printed after a later one (%s):\n%s", i, recs[i].Time, recs[i-1].Time, r.stdout)
		}
	}
	if strings.Contains(r.stderr, "printed after later ones") {
		t.Errorf("a warning although the window put everything in order: %s", r.stderr)
	}
	// The same for the table and the OCSF feed.
	r = bt.query(t, "--format", "ocsf")
	var last int64
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e struct{ Time int64 }
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Time < last {
			t.Fatalf("OCSF out of time order or not JSON (%v):\n%s", err, r.stdout)
		}
		last = e.Time
	}
}

// TestQueryBeyondWindow: a log that goes back further than the reorder
// window still yields every record once; the late ones are counted and
// warned about, never dropped.
func TestQueryBeyondWindow(t *testing.T) {
	bt := newBackInTime(t)
	old := reorderWindow
	reorderWindow = 1
	defer func() { reorderWindow = old }()
	r := bt.query(t)
	if r.code != exitOK {
		t.Fatal(r)
	}
	recs := decodeLines(t, r.stdout)
	seen := map[string]bool{}
	for _, rec := range recs {
		seen[rec.Log+":"+itoa(int(rec.Seq))] = true
	}
	if len(recs) != bt.total() || len(seen) != bt.total() {
		t.Fatalf("%d records (%d distinct), want %d", len(recs), len(seen), bt.total())
	}
	// Merged A10 B15 A20 A5 B25 A30 A12 through a window of one record:
	// 5 and 12 come after later records.
	if !strings.Contains(r.stderr, "warning: 2 records printed after later ones") {
		t.Errorf("no warning counting the 2 late records: %s", r.stderr)
	}
}

// TestQueryLimitResumes: a run cut by --limit at any point, resumed from
// the cursor it printed, loses no record, whatever order the logs are in.
func TestQueryLimitResumes(t *testing.T) {
	bt := newBackInTime(t)
	for _, window := range []int{1, 2, reorderWindow} {
		old := reorderWindow
		reorderWindow = window
		for n := 1; n <= bt.total(); n++ {
			first := bt.query(t, "--limit", itoa(n))
			cur := cursorOf(t, first.stderr)
			rest := bt.query(t, "--after", cur)
			seen := map[string]bool{}
			for _, rec := range append(decodeLines(t, first.stdout), decodeLines(t, rest.stdout)...) {
				seen[rec.Log+":"+itoa(int(rec.Seq))] = true
			}
			if len(seen) != bt.total() {
				t.Errorf("window %d, --limit %d then --after %s: %d of %d records", window, n, cur, len(seen), bt.total())
			}
		}
		reorderWindow = old
	}
}

func cursorOf(t *testing.T, stderr string) string {
	t.Helper()
	cur := ""
	for _, line := range strings.Split(stderr, "\n") {
		if c, ok := strings.CutPrefix(line, "cursor: "); ok {
			cur = c
		}
	}
	if _, err := parseCursor(cur); err != nil {
		t.Fatalf("no cursor on stderr: %q", stderr)
	}
	return cur
}

// TestQueryCursorFile: --cursor FILE reads where to resume, writes the new
// cursor there atomically after each pass, and refuses a file that holds
// anything else.
func TestQueryCursorFile(t *testing.T) {
	g := newGapStore(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "idvault.cursor")
	q := func(args ...string) result {
		return runCLI(t, nil, append([]string{"audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--cursor", file}, args...)...)
	}
	r := q()
	if r.code != exitOK || strings.Count(r.stdout, "\n") != 5 {
		t.Fatalf("first run: %v", r)
	}
	b, err := os.ReadFile(file)
	if err != nil || string(b) != cursorOf(t, r.stderr)+"\n" {
		t.Fatalf("cursor file %q (%v), stderr %q", b, err, r.stderr)
	}
	if r = q(); r.code != exitOK || r.stdout != "" {
		t.Fatalf("a rerun from the file printed records again: %v", r)
	}
	a, err := audit.NewAppender(ctx, g.st, g.signer, audit.AppenderOptions{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var lastNew audit.Record
	for i := range 3 {
		if lastNew, err = a.Append(ctx, audit.Record{Event: audit.EventGrant, Outcome: audit.OutcomeOK, Principal: "new-" + itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// --follow writes the file after each pass.
	fctx, cancel := context.WithCancel(ctx)
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- run(fctx, []string{"audit", "query", "--store", g.dir, "--verifier-key", g.verifier, "--cursor", file, "--follow", "--poll", "10ms"},
			&out, &errb, func(string) string { return "" })
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, _ := readCursorFile(file)
		if c[lastNew.Log] == lastNew.Seq+1 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the follow never wrote the cursor of the new records: %q\n%s", c, errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("follow: exit %d: %s", code, errb.String())
	}
	a.Close(ctx)
	if got := strings.Count(out.String(), "new-"); got != 3 {
		t.Fatalf("follow printed %d new records, want 3:\n%s", got, out.String())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left beside the cursor file: %v", ents)
	}
	// A file that is not a cursor is refused, not taken as the beginning.
	if err := os.WriteFile(file, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r = q(); r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "invalid cursor") {
		t.Fatalf("a corrupt cursor file: %v", r)
	}
	if r = q("--after", "c1:"); r.code != exitUsage {
		t.Fatalf("--after with --cursor: %v", r)
	}
}

// ocsfDef is a class or object of testdata/ocsf-1.3.
type ocsfDef struct {
	Name        string                 `json:"name"`
	UID         int                    `json:"uid"`
	Extends     string                 `json:"extends"`
	Profiles    []string               `json:"profiles"`
	Constraints map[string][]string    `json:"constraints"`
	Attributes  map[string]ocsfAttrDef `json:"attributes"`
}

type ocsfAttrDef struct {
	Requirement string `json:"requirement"`
	Type        string `json:"type"`
	ObjectType  string `json:"object_type"`
	IsArray     bool   `json:"is_array"`
	Profile     string `json:"profile"`
}

// ocsfSchema holds the definitions of testdata/ocsf-1.3 by name.
type ocsfSchema struct {
	classes, objects map[string]*ocsfDef
}

func loadOCSF(t testing.TB) *ocsfSchema {
	t.Helper()
	s := &ocsfSchema{classes: map[string]*ocsfDef{}, objects: map[string]*ocsfDef{}}
	for dir, into := range map[string]map[string]*ocsfDef{"classes": s.classes, "objects": s.objects} {
		files, err := filepath.Glob(filepath.Join("testdata", "ocsf-1.3", dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no OCSF %s in testdata: %v", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var d ocsfDef
			dec := json.NewDecoder(bytes.NewReader(b))
			if err := dec.Decode(&d); err != nil || d.Name == "" || len(d.Attributes) == 0 {
				t.Fatalf("%s: %v", f, err)
			}
			into[d.Name] = &d
		}
	}
	return s
}

// check returns every way event v misses its class's definition: a
// required attribute absent (unless it belongs to a profile the event does
// not declare in metadata.profiles), an object-typed attribute that is not
// an object (or an array of them), an object missing what its definition
// requires (recursively, with its at_least_one and just_one constraints),
// and any attribute the definition does not have.
func (s *ocsfSchema) check(v map[string]any) []string {
	var profiles []string
	if md, ok := v["metadata"].(map[string]any); ok {
		if ps, ok := md["profiles"].([]any); ok {
			for _, p := range ps {
				if p, ok := p.(string); ok {
					profiles = append(profiles, p)
				}
			}
		}
	}
	uid, _ := v["class_uid"].(float64)
	for _, c := range s.classes {
		if c.UID == int(uid) {
			return s.checkObject("", v, c, profiles)
		}
	}
	return []string{fmt.Sprintf("class_uid %v: no such class in testdata/ocsf-1.3", v["class_uid"])}
}

func (s *ocsfSchema) checkObject(path string, v map[string]any, d *ocsfDef, profiles []string) []string {
	var errs []string
	present := func(k string) bool {
		x, ok := v[k]
		if !ok || x == nil {
			return false
		}
		switch x := x.(type) {
		case string:
			return x != ""
		case []any:
			return len(x) > 0
		case map[string]any:
			return len(x) > 0
		}
		return true
	}
	for name, a := range d.Attributes {
		if a.Requirement == "required" && (a.Profile == "" || slices.Contains(profiles, a.Profile)) && !present(name) {
			errs = append(errs, path+name+": required by "+d.Name+", absent")
		}
	}
	for kind, names := range d.Constraints {
		n := 0
		for _, k := range names {
			if present(k) {
				n++
			}
		}
		if kind == "at_least_one" && n == 0 || kind == "just_one" && n != 1 {
			errs = append(errs, fmt.Sprintf("%s: constraint %s %v of %s not met", cmp.Or(strings.TrimSuffix(path, "."), d.Name), kind, names, d.Name))
		}
	}
	for k, x := range v {
		a, ok := d.Attributes[k]
		if !ok {
			errs = append(errs, path+k+": not an attribute of "+d.Name)
			continue
		}
		if a.ObjectType == "" || a.ObjectType == "object" {
			continue // a scalar, or a free-form object (unmapped)
		}
		od, ok := s.objects[a.ObjectType]
		if !ok {
			errs = append(errs, path+k+": object "+a.ObjectType+" not in testdata/ocsf-1.3/objects (add it from the 1.3.0 export)")
			continue
		}
		elems := []any{x}
		if a.IsArray {
			arr, ok := x.([]any)
			if !ok {
				errs = append(errs, path+k+": not an array")
				continue
			}
			elems = arr
		}
		for i, el := range elems {
			m, ok := el.(map[string]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s%s[%d]: not an object", path, k, i))
				continue
			}
			errs = append(errs, s.checkObject(path+k+".", m, od, profiles)...)
		}
	}
	slices.Sort(errs)
	return errs
}

// TestOCSFSchemaCheckBites: the checker finds what the events of earlier
// builds lacked, so a green TestOCSFRequiredAttributes means something.
func TestOCSFSchemaCheckBites(t *testing.T) {
	s := loadOCSF(t)
	ev := map[string]any{"class_uid": 6003.0, "activity_id": 1.0, "category_uid": 6.0, "severity_id": 1.0, "time": 1.0, "type_uid": 600301.0,
		"api":      map[string]any{"operation": "put"},
		"metadata": map[string]any{"version": "1.3.0", "product": map[string]any{"name": "idvault", "vendor_name": "idvault"}},
		"bogus":    1.0,
	}
	errs := strings.Join(s.check(ev), "\n")
	for _, want := range []string{"actor: required", "src_endpoint: required", "bogus: not an attribute"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the check missed %q; it found:\n%s", want, errs)
		}
	}
	ev["actor"] = map[string]any{"user": map[string]any{}}
	ev["src_endpoint"] = map[string]any{"port": 1.0}
	errs = strings.Join(s.check(ev), "\n")
	for _, want := range []string{"actor.user: constraint at_least_one", "src_endpoint: constraint at_least_one"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the check missed %q; it found:\n%s", want, errs)
		}
	}
	ev["metadata"].(map[string]any)["profiles"] = []any{"cloud"}
	if errs = strings.Join(s.check(ev), "\n"); !strings.Contains(errs, "cloud: required") {
		t.Errorf("a declared profile's required attribute is not required:\n%s", errs)
	}
}

// ocsfRecords are records of every event the vault writes, with every
// outcome, with and without each identifier.
func ocsfRecords() []audit.Record {
	var out []audit.Record
	events := append(slices.Clone(knownEvents), "some-future-event")
	for _, ev := range events {
		for _, o := range knownOutcomes {
			for i, r := range []audit.Record{
				{},
				{Principal: "reviewer-7", RemoteAddr: "192.0.2.7:5555", Object: obj1, Subject: subj, TokenID: tok, Purpose: "age-check", Reason: "token-replayed", Detail: "x"},
				{Principal: "ops@example", Subject: subj, Detail: "member left"},
				{Object: obj2, Subject: subj},
				{RemoteAddr: "[2001:db8::1]:443"},
				{RemoteAddr: "2001:db8::2"},
				{RemoteAddr: "a proxy said: unknown"},
			} {
				r.Time, r.Log, r.Seq = base, "log-"+itoa(i), int64(i)
				r.Event, r.Outcome = audit.Event(ev), audit.Outcome(o)
				out = append(out, r)
			}
		}
	}
	return out
}

// TestOCSFRequiredAttributes: every OCSF event carries every attribute
// its class and objects require in OCSF 1.3.0, and nothing the schema
// does not define; metadata.product has a version.
func TestOCSFRequiredAttributes(t *testing.T) {
	s := loadOCSF(t)
	check := func(what string, line []byte) {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if errs := s.check(v); len(errs) > 0 {
			t.Errorf("%s: %s\n%s", what, strings.Join(errs, "\n"), line)
		}
		md := v["metadata"].(map[string]any)
		if p := md["product"].(map[string]any); p["version"] == nil || p["version"] == "" {
			t.Errorf("%s: metadata.product has no version", what)
		}
	}
	for _, r := range ocsfRecords() {
		for _, verified := range []bool{true, false} {
			b, err := json.Marshal(toOCSF(r, verified))
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("%s %s principal=%q remote=%q object=%q", r.Event, r.Outcome, r.Principal, r.RemoteAddr, r.Object), b)
		}
	}
	// And what the command prints, from the fixture's real logs.
	fx := newFixture(t)
	r := runCLI(t, nil, "audit", "query", "--store", fx.dir, "--format", "ocsf")
	if r.code != exitOK {
		t.Fatal(r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 14 {
		t.Fatalf("%d events, want 14", len(lines))
	}
	for i, line := range lines {
		check("fixture event "+itoa(i), []byte(line))
	}
}

// TestOCSFActorAndSource: the actor is the principal when there is one,
// the writing instance otherwise; the source is the requester's address
// when there is one, the writing instance otherwise.
func TestOCSFActorAndSource(t *testing.T) {
	e := toOCSF(audit.Record{Log: "log1", Event: audit.EventRedeem, Outcome: audit.OutcomeOK, Principal: "reviewer-7", RemoteAddr: "[2001:db8::1]:443", Object: obj1, Subject: subj}, true)
	if e.Actor.User == nil || e.Actor.User.UID != "reviewer-7" || e.SrcEndpoint.IP != "2001:db8::1" || e.SrcEndpoint.Port != 443 {
		t.Errorf("redeem: actor %+v, source %+v", e.Actor, e.SrcEndpoint)
	}
	if len(e.Resources) != 1 || e.Resources[0].UID != obj1 || e.Resources[0].Owner == nil || e.Resources[0].Owner.UID != subj {
		t.Errorf("redeem: resources %+v", e.Resources)
	}
	e = toOCSF(audit.Record{Log: "log1", Event: audit.EventPut, Outcome: audit.OutcomeOK, Object: obj1}, true)
	if e.Actor.User != nil || e.Actor.AppName != "idvault" || e.Actor.AppUID != "log1" || e.SrcEndpoint.SvcName != "idvault" || e.SrcEndpoint.UID != "log1" {
		t.Errorf("put: actor %+v, source %+v", e.Actor, e.SrcEndpoint)
	}
	e = toOCSF(audit.Record{Log: "log1", Event: audit.EventErase, Outcome: audit.OutcomeOK, Principal: "ops", Subject: subj}, true)
	if e.ActivityID != 4 || len(e.Resources) != 1 || e.Resources[0].UID != subj || e.Resources[0].Type != resourceSubject {
		t.Errorf("erase: activity %d, resources %+v", e.ActivityID, e.Resources)
	}
	if e := toOCSF(audit.Record{Event: "decide", Outcome: audit.OutcomeOK}, true); e.ActivityID != 99 || e.ActivityName != "decide" {
		t.Errorf("decide: %d %q", e.ActivityID, e.ActivityName)
	}
	if e := toOCSF(audit.Record{Event: audit.EventRotate, Outcome: "started"}, true); e.StatusID != 99 || e.Status != "started" {
		t.Errorf("a started rewrap: status %d %q", e.StatusID, e.Status)
	}
}

// FuzzOCSFEvent: whatever the principal and the requester's address (both
// come from outside: a session, a connection or a proxy header), the event
// is valid OCSF 1.3.0 and carries them without loss.
func FuzzOCSFEvent(f *testing.F) {
	for _, s := range [][2]string{
		{"reviewer-7", "192.0.2.7:5555"}, {"", ""}, {"ops@example", "[2001:db8::1]:443"},
		{"x", "2001:db8::2"}, {"x", "1.2.3.4:0"}, {"x", "[fe80::1%eth0]:80"}, {"evil\t\x1b[31m", "a proxy said: unknown"},
		{"x", "::ffff:192.0.2.1"}, {"x", "[]:"}, {"x", ":"},
	} {
		f.Add(s[0], s[1])
	}
	s := loadOCSF(f)
	f.Fuzz(func(t *testing.T, principal, remote string) {
		r := audit.Record{Time: base, Log: "log1", Seq: 3, Event: audit.EventRedeem, Outcome: audit.OutcomeRefused, Reason: "token-replayed",
			Principal: principal, RemoteAddr: remote, Object: obj1}
		e := toOCSF(r, true)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if errs := s.check(v); len(errs) > 0 {
			t.Fatalf("principal %q remote %q: %v\n%s", principal, remote, errs, b)
		}
		if principal != "" && (e.Actor.User == nil || e.Actor.User.UID != principal) {
			t.Fatalf("principal %q lost: %+v", principal, e.Actor)
		}
		if remote != "" && e.SrcEndpoint.Name != remote && e.SrcEndpoint.IP == "" {
			t.Fatalf("remote %q lost: %+v", remote, e.SrcEndpoint)
		}
	})
}
