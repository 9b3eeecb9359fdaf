package s3store_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The least-privilege policies of docs/policy/ (the vault's credentials,
// the auditor's), read the way AWS reads them, and the S3 requests a
// recorder saw, named by the IAM action AWS checks for each. The MinIO
// tests (policy_minio_test.go) run the vault under these policies; this
// file holds what they need and the tests that need no server.

// policyDir is docs/policy/ from this package's directory.
var policyDir = filepath.Join("..", "..", "docs", "policy")

// policyDoc is an IAM policy document: the subset the project's policies
// use (no NotAction or NotResource; a bucket policy's Principal "*"; one
// condition, whether If-None-Match is absent), decoded strictly so that a
// policy using more fails here instead of being misread.
type policyDoc struct {
	Version   string
	Statement []policyStatement
}

type policyStatement struct {
	Sid       string
	Effect    string
	Principal any `json:",omitempty"`
	Action    []string
	Resource  []string
	Condition map[string]map[string]string `json:",omitempty"`
}

// matches reports whether st applies to action on resource for a request
// with headers h (nil: none).
func (st policyStatement) matches(action, resource string, h http.Header) bool {
	if !slices.ContainsFunc(st.Action, func(a string) bool { return wildcard(strings.ToLower(a), strings.ToLower(action)) }) ||
		!slices.ContainsFunc(st.Resource, func(r string) bool { return wildcard(r, resource) }) {
		return false
	}
	// parsePolicy admits no other condition.
	if want, ok := st.Condition["Null"]["s3:if-none-match"]; ok {
		return (h.Get("If-None-Match") == "") == (want == "true")
	}
	return true
}

// loadPolicy reads docs/policy/<name> with its placeholders filled in.
func loadPolicy(t testing.TB, name, dataBucket, keyBucket, prefix string) (policyDoc, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(policyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("BUCKET_DATA", dataBucket, "BUCKET_KEYS", keyBucket, "PREFIX", prefix).Replace(string(raw))
	return parsePolicy(t, s), s
}

func parsePolicy(t testing.TB, s string) policyDoc {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var p policyDoc
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("policy: %v", err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("policy: version %q, %d statements", p.Version, len(p.Statement))
	}
	for _, st := range p.Statement {
		if st.Effect != "Allow" && st.Effect != "Deny" || len(st.Action) == 0 || len(st.Resource) == 0 {
			t.Fatalf("policy: statement %q: effect %q, %d actions, %d resources", st.Sid, st.Effect, len(st.Action), len(st.Resource))
		}
		if st.Principal != nil && st.Principal != "*" {
			t.Fatalf("policy: statement %q: principal %v", st.Sid, st.Principal)
		}
		for op, kv := range st.Condition {
			if _, ok := kv["s3:if-none-match"]; op != "Null" || len(kv) != 1 || !ok {
				t.Fatalf("policy: statement %q: condition %s %v: not understood here", st.Sid, op, kv)
			}
		}
	}
	return p
}

func (p policyDoc) json(t testing.TB) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// without returns p less one statement.
func (p policyDoc) without(i int) policyDoc {
	q := policyDoc{Version: p.Version}
	q.Statement = append(slices.Clone(p.Statement[:i]), p.Statement[i+1:]...)
	return q
}

// withoutPair returns p with action a or resource r (one of them empty)
// taken out of statement i, and the statement dropped if that empties it.
func (p policyDoc) withoutPair(i int, a, r string) policyDoc {
	st := p.Statement[i]
	st.Action = slices.DeleteFunc(slices.Clone(st.Action), func(x string) bool { return x == a })
	st.Resource = slices.DeleteFunc(slices.Clone(st.Resource), func(x string) bool { return x == r })
	if len(st.Action) == 0 || len(st.Resource) == 0 {
		return p.without(i)
	}
	q := p.without(i)
	q.Statement = slices.Insert(q.Statement, i, st)
	return q
}

// allows reports whether AWS would allow action on resource (an ARN) under
// p alone: an explicit Deny wins, else an Allow is needed. Actions match
// case-insensitively, resources case-sensitively; '*' and '?' are the IAM
// wildcards in both.
func (p policyDoc) allows(action, resource string) bool { return p.allowsWith(action, resource, nil) }

// allowsWith is allows for a request carrying headers h.
func (p policyDoc) allowsWith(action, resource string, h http.Header) bool {
	allowed := false
	for _, st := range p.Statement {
		if !st.matches(action, resource, h) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

// denies reports whether a Deny statement of p applies (a bucket policy
// that only denies grants nothing, so only its denials count).
func (p policyDoc) denies(action, resource string, h http.Header) bool {
	for _, st := range p.Statement {
		if st.Effect == "Deny" && st.matches(action, resource, h) {
			return true
		}
	}
	return false
}

// wildcard matches s against an IAM pattern: '*' any run of characters
// ('/' included), '?' any one.
func wildcard(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
	return s == ""
}

// s3Call is one request a client sent, and the status it got.
type s3Call struct {
	Method, Bucket, Key string
	Query               url.Values
	Header              http.Header
	Status              int
}

func (c s3Call) String() string {
	q := ""
	if len(c.Query) > 0 {
		keys := make([]string, 0, len(c.Query))
		for k := range c.Query {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		q = "?" + strings.Join(keys, "&")
	}
	return fmt.Sprintf("%s /%s/%s%s → %d", c.Method, c.Bucket, c.Key, q, c.Status)
}

// resource is the ARN AWS authorizes c against.
func (c s3Call) resource() string {
	if c.Key == "" {
		return "arn:aws:s3:::" + c.Bucket
	}
	return "arn:aws:s3:::" + c.Bucket + "/" + c.Key
}

// actions are the IAM actions AWS requires for c (all of them), from the
// S3 API reference: the operation's own action, plus s3:PutObjectTagging
// for a PUT that carries tags, s3:PutObjectRetention and
// s3:PutObjectLegalHold for one that sets them, and, for a HEAD, the
// actions without which S3 leaves the object-lock headers out of the
// answer (s3store reads them to refuse writing over, or deleting, a
// retained object). An operation the vault has no business making is an
// error.
func (c s3Call) actions() ([]string, error) {
	has := func(k string) bool { _, ok := c.Query[k]; return ok }
	versioned := c.Query.Get("versionId") != ""
	if c.Key == "" {
		switch {
		case c.Method == http.MethodHead && len(c.Query) == 0:
			return []string{"s3:ListBucket"}, nil
		case c.Method == http.MethodGet && has("location"):
			return []string{"s3:GetBucketLocation"}, nil
		case c.Method == http.MethodGet && has("object-lock"):
			return []string{"s3:GetBucketObjectLockConfiguration"}, nil
		case c.Method == http.MethodGet && has("versioning"):
			return []string{"s3:GetBucketVersioning"}, nil
		case c.Method == http.MethodGet && has("versions"):
			return []string{"s3:ListBucketVersions"}, nil
		case c.Method == http.MethodGet && c.Query.Get("list-type") == "2":
			return []string{"s3:ListBucket"}, nil
		}
		return nil, fmt.Errorf("unexpected bucket request %s", c)
	}
	lock := []string{}
	if c.Header.Get("X-Amz-Tagging") != "" {
		lock = append(lock, "s3:PutObjectTagging")
	}
	if c.Header.Get("X-Amz-Object-Lock-Mode") != "" || c.Header.Get("X-Amz-Object-Lock-Retain-Until-Date") != "" {
		lock = append(lock, "s3:PutObjectRetention")
	}
	if c.Header.Get("X-Amz-Object-Lock-Legal-Hold") != "" {
		lock = append(lock, "s3:PutObjectLegalHold")
	}
	get := "s3:GetObject"
	if versioned {
		get = "s3:GetObjectVersion"
	}
	switch {
	case c.Header.Get("X-Amz-Copy-Source") != "":
	case c.Method == http.MethodGet && has("uploadId"):
		return []string{"s3:ListMultipartUploadParts"}, nil
	case c.Method == http.MethodGet && len(c.Query) == 0 || c.Method == http.MethodGet && len(c.Query) == 1 && versioned:
		return []string{get}, nil
	case c.Method == http.MethodHead && (len(c.Query) == 0 || len(c.Query) == 1 && versioned):
		return []string{get, "s3:GetObjectRetention", "s3:GetObjectLegalHold"}, nil
	case c.Method == http.MethodPut && has("tagging"):
		if versioned {
			return []string{"s3:PutObjectVersionTagging"}, nil
		}
		return []string{"s3:PutObjectTagging"}, nil
	case c.Method == http.MethodPut && (has("retention") || has("legal-hold")):
	case c.Method == http.MethodPut && has("partNumber") && has("uploadId"):
		return []string{"s3:PutObject"}, nil
	case c.Method == http.MethodPut && len(c.Query) == 0, c.Method == http.MethodPost && has("uploads"):
		return append([]string{"s3:PutObject"}, lock...), nil
	case c.Method == http.MethodPost && has("uploadId"):
		return []string{"s3:PutObject"}, nil
	case c.Method == http.MethodDelete && has("uploadId"):
		return []string{"s3:AbortMultipartUpload"}, nil
	case c.Method == http.MethodDelete && len(c.Query) == 0:
		return []string{"s3:DeleteObject"}, nil
	case c.Method == http.MethodDelete && len(c.Query) == 1 && versioned:
		if c.Header.Get("X-Amz-Bypass-Governance-Retention") != "" {
			return []string{"s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"}, nil
		}
		return []string{"s3:DeleteObjectVersion"}, nil
	}
	return nil, fmt.Errorf("unexpected object request %s", c)
}

// recorder is an http.RoundTripper that notes every S3 request a client
// makes (method, bucket, key, query, the headers that decide IAM actions)
// and the status of its answer.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []s3Call
}

func newRecorder() *recorder { return &recorder{base: http.DefaultTransport} }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	if bucket == "" {
		return r.base.RoundTrip(req) // STS (the credentials' refresh), not S3
	}
	c := s3Call{Method: req.Method, Bucket: bucket, Key: key, Query: req.URL.Query(), Header: http.Header{}}
	for _, h := range []string{"X-Amz-Tagging", "X-Amz-Object-Lock-Mode", "X-Amz-Object-Lock-Retain-Until-Date",
		"X-Amz-Object-Lock-Legal-Hold", "X-Amz-Copy-Source", "X-Amz-Bypass-Governance-Retention", "If-None-Match"} {
		if v := req.Header.Get(h); v != "" {
			c.Header.Set(h, v)
		}
	}
	resp, err := r.base.RoundTrip(req)
	if err == nil {
		c.Status = resp.StatusCode
	}
	r.mu.Lock()
	r.log = append(r.log, c)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) calls() []s3Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// forbidden returns the calls the server answered 403.
func (r *recorder) forbidden() []s3Call {
	var out []s3Call
	for _, c := range r.calls() {
		if c.Status == http.StatusForbidden {
			out = append(out, c)
		}
	}
	return out
}

// checkAllowedOnAWS fails t for each call that is unexpected or that p
// would not allow on AWS, and returns the (action, resource) pairs used.
func checkAllowedOnAWS(t testing.TB, p policyDoc, calls []s3Call) [][2]string {
	t.Helper()
	var used [][2]string
	bad := map[string]bool{}
	for _, c := range calls {
		if c.Status == 0 {
			continue // never reached the server
		}
		acts, err := c.actions()
		if err != nil {
			if !bad[err.Error()] {
				t.Error(err)
			}
			bad[err.Error()] = true
			continue
		}
		for _, a := range acts {
			used = append(used, [2]string{a, c.resource()})
			if !p.allowsWith(a, c.resource(), c.Header) && !bad[a+c.resource()] {
				bad[a+c.resource()] = true
				t.Errorf("%s needs %s on %s, which the policy does not allow on AWS", c, a, c.resource())
			}
		}
	}
	return used
}

// checkEveryRightUsed fails t for each action and each resource of each
// Allow statement of p whose removal would still allow every use: a right
// the calls never needed, unless exempt names it (statement ID, and an
// action or the end of a resource).
func checkEveryRightUsed(t testing.TB, p policyDoc, used [][2]string, exempt [][2]string) {
	exempted := func(sid, item string) bool {
		return slices.ContainsFunc(exempt, func(e [2]string) bool { return e[0] == sid && strings.HasSuffix(item, e[1]) })
	}
	t.Helper()
	allowedAll := func(q policyDoc) bool {
		for _, u := range used {
			if !q.allows(u[0], u[1]) {
				return false
			}
		}
		return true
	}
	for i, st := range p.Statement {
		if st.Effect != "Allow" {
			continue
		}
		for _, a := range st.Action {
			if exempted(st.Sid, a) {
				continue
			}
			if allowedAll(p.withoutPair(i, a, "")) {
				t.Errorf("statement %s: action %s is never needed", st.Sid, a)
			}
		}
		for _, r := range st.Resource {
			if exempted(st.Sid, r) {
				continue
			}
			if allowedAll(p.withoutPair(i, "", r)) {
				t.Errorf("statement %s: resource %s is never needed", st.Sid, r)
			}
		}
	}
}

func TestWildcard(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"arn:aws:s3:::b/p/audit/0*", "arn:aws:s3:::b/p/audit/0123/00000000000000000000", true},
		{"arn:aws:s3:::b/p/audit/0*", "arn:aws:s3:::b/p/audit/_lease/0123/1", false},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::b/", true},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::b", false},
		{"arn:aws:s3:::b", "arn:aws:s3:::b/x", false},
		{"arn:aws:s3:::b/a?c", "arn:aws:s3:::b/abc", true},
		{"arn:aws:s3:::b/a?c", "arn:aws:s3:::b/ac", false},
		{"s3:putbucket*", "s3:putbucketversioning", true},
		{"s3:putbucket*", "s3:putobject", false},
		{"*", "", true},
	} {
		if got := wildcard(c.pattern, c.s); got != c.want {
			t.Errorf("wildcard(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// TestVaultPolicyOnAWSRules checks the vault's policy as AWS would read it,
// for the calls that matter most (the MinIO tests record the real ones):
// what the vault needs is allowed; deleting evidence, bypassing retention
// and reconfiguring either bucket are denied.
func TestVaultPolicyOnAWSRules(t *testing.T) {
	for _, prefix := range []string{"", "tenant-a/"} {
		p, _ := loadPolicy(t, "vault.json", "idv-data", "idv-keys", prefix)
		data := "arn:aws:s3:::idv-data/" + prefix
		keys := "arn:aws:s3:::idv-keys/" + prefix
		log := "0123456789abcdef0123456789abcdef"
		allow := [][2]string{
			{"s3:ListBucket", "arn:aws:s3:::idv-data"},
			{"s3:ListBucketVersions", "arn:aws:s3:::idv-data"},
			{"s3:GetBucketObjectLockConfiguration", "arn:aws:s3:::idv-keys"},
			{"s3:GetBucketVersioning", "arn:aws:s3:::idv-keys"},
			{"s3:PutObject", data + "blobs/" + log},
			{"s3:PutObjectTagging", data + "blobs/" + log},
			{"s3:DeleteObjectVersion", data + "blobs/" + log},
			{"s3:PutObject", data + "audit/" + log + "/00000000000000000000"},
			{"s3:PutObjectRetention", data + "audit/_state/00000000000000000001"},
			{"s3:GetObjectVersion", data + "audit/_state/00000000000000000001"},
			{"s3:DeleteObjectVersion", data + "audit/_lease/" + log + "/00000000000000000002"},
			{"s3:DeleteObject", data + "counts/2026112110/k/1/1"},
			{"s3:DeleteObjectVersion", data + "quarantine/" + log},
			{"s3:PutObject", data + "system/keyset"},
			{"s3:DeleteObject", keys + "keys/" + log},
		}
		// byDeny: refused by the Deny statements on their own, even beside
		// a policy that allows everything.
		deny := []struct {
			action, resource string
			byDeny           bool
		}{
			{"s3:DeleteObject", data + "audit/" + log + "/00000000000000000000", true},
			{"s3:DeleteObjectVersion", data + "audit/f" + log[1:] + "/checkpoints/00000000000000000007", true},
			{"s3:DeleteObjectVersion", data + "audit/_state/00000000000000000001", true},
			{"s3:DeleteObject", data + "audit/_registry/" + log, true},
			{"s3:DeleteObjectVersion", data + "system/keyset", true},
			{"s3:DeleteObject", data + "system/clock", true},
			{"s3:BypassGovernanceRetention", data + "blobs/" + log, true},
			{"s3:PutObjectLegalHold", data + "blobs/" + log, true},
			{"s3:PutObjectRetention", data + "blobs/" + log, false},
			{"s3:PutObjectTagging", data + "audit/_state/00000000000000000001", false},
			{"s3:PutBucketVersioning", "arn:aws:s3:::idv-keys", true},
			{"s3:PutBucketVersioning", "arn:aws:s3:::idv-data", true},
			{"s3:PutLifecycleConfiguration", "arn:aws:s3:::idv-data", true},
			{"s3:PutBucketObjectLockConfiguration", "arn:aws:s3:::idv-data", true},
			{"s3:PutBucketPolicy", "arn:aws:s3:::idv-data", true},
			{"s3:DeleteBucketPolicy", "arn:aws:s3:::idv-keys", true},
			{"s3:DeleteBucket", "arn:aws:s3:::idv-keys", true},
			{"s3:PutReplicationConfiguration", "arn:aws:s3:::idv-data", true},
			{"s3:GetObject", keys + "other/" + log, false},
		}
		if prefix != "" {
			deny = append(deny, struct {
				action, resource string
				byDeny           bool
			}{"s3:PutObject", "arn:aws:s3:::idv-data/other-tenant/audit/x", false})
		}
		denyOnly := policyDoc{Version: p.Version, Statement: []policyStatement{{Effect: "Allow", Action: []string{"s3:*"}, Resource: []string{"*"}}}}
		for _, st := range p.Statement {
			if st.Effect == "Deny" {
				denyOnly.Statement = append(denyOnly.Statement, st)
			}
		}
		for _, c := range allow {
			if !p.allows(c[0], c[1]) {
				t.Errorf("prefix %q: %s on %s denied, the vault needs it", prefix, c[0], c[1])
			}
			if !denyOnly.allows(c[0], c[1]) {
				t.Errorf("prefix %q: %s on %s denied by a Deny statement, the vault needs it", prefix, c[0], c[1])
			}
		}
		for _, c := range deny {
			if p.allows(c.action, c.resource) {
				t.Errorf("prefix %q: %s on %s allowed, the vault never needs it", prefix, c.action, c.resource)
			}
			if c.byDeny && denyOnly.allows(c.action, c.resource) {
				t.Errorf("prefix %q: %s on %s not refused by the Deny statements", prefix, c.action, c.resource)
			}
		}
	}
}

// TestDataBucketPolicyOnAWSRules: the data bucket's AWS policy refuses a
// write under audit/ without If-None-Match (an overwrite, a new version on
// top of a write-once one), and nothing else.
func TestDataBucketPolicyOnAWSRules(t *testing.T) {
	bp, _ := loadPolicy(t, "data-bucket-aws.json", "idv-data", "idv-keys", "tenant-a/")
	create := http.Header{"If-None-Match": {"*"}}
	for _, c := range []struct {
		action, key string
		h           http.Header
		denied      bool
	}{
		{"s3:PutObject", "audit/0123456789abcdef0123456789abcdef/00000000000000000000", nil, true},
		{"s3:PutObject", "audit/_state/00000000000000000003", nil, true},
		{"s3:PutObject", "audit/_lease/0123456789abcdef0123456789abcdef/00000000000000000001", nil, true},
		{"s3:PutObject", "audit/_state/00000000000000000003", create, false},
		{"s3:PutObject", "audit/0123456789abcdef0123456789abcdef/checkpoints/00000000000000000009", create, false},
		{"s3:PutObject", "system/keyset", nil, false},
		{"s3:PutObject", "blobs/0123456789abcdef0123456789abcdef", nil, false},
		{"s3:GetObject", "audit/_state/00000000000000000003", nil, false},
	} {
		if got := bp.denies(c.action, "arn:aws:s3:::idv-data/tenant-a/"+c.key, c.h); got != c.denied {
			t.Errorf("%s on %s (If-None-Match %q): denied %v, want %v", c.action, c.key, c.h.Get("If-None-Match"), got, c.denied)
		}
	}
}

// TestPolicyInOnePlace: every policy in the documentation is one of the
// files of docs/policy/, included verbatim after a marker line naming it,
// so the documented policy is the tested one.
func TestPolicyInOnePlace(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(policyDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy files in %s: %v", policyDir, err)
	}
	included := map[string]int{}
	docs, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	docs = append(docs, filepath.Join("..", "..", "README.md"))
	block := regexp.MustCompile("(?s)(<!-- policy: (docs/policy/[a-z0-9-]+\\.json) -->\n)?```json\n(.*?)```")
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatch(b, -1) {
			if !bytes.Contains(m[3], []byte(`"Statement"`)) {
				continue
			}
			if len(m[2]) == 0 {
				t.Errorf("%s: a policy not included from docs/policy/ (precede it with <!-- policy: docs/policy/NAME.json -->)", doc)
				continue
			}
			want, err := os.ReadFile(filepath.Join("..", "..", string(m[2])))
			if err != nil {
				t.Errorf("%s: %v", doc, err)
				continue
			}
			if !bytes.Equal(m[3], want) {
				t.Errorf("%s: the copy of %s differs from the file", doc, m[2])
			}
			included[filepath.Base(string(m[2]))]++
		}
	}
	for _, f := range files {
		if included[filepath.Base(f)] == 0 {
			t.Errorf("%s is included in no document", f)
		}
		b, _ := os.ReadFile(f)
		parsePolicy(t, strings.NewReplacer("BUCKET_DATA", "d", "BUCKET_KEYS", "k", "PREFIX", "").Replace(string(b)))
	}
}
