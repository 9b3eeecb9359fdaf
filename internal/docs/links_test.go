package docs

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idvault/idvault/internal/release"
)

// pending are documents other branches of this round write: a link to one
// is checked once the file exists, and only logged until then. Remove an
// entry once its document is on main.
const pendingPrefix = "pending, written by another branch: "

var pending = map[string]bool{
	"docs/architecture.md": true,
}

// TestLinksResolve: every relative link in every Markdown file of the
// checkout names a file or directory that exists, and every #fragment
// names a heading of its Markdown target (or of the same document).
func TestLinksResolve(t *testing.T) {
	root := repoRoot(t)
	var mds []string
	for _, f := range trackedFiles(t, root) {
		if strings.HasSuffix(f, ".md") {
			mds = append(mds, f)
		}
	}
	if !slices.Contains(mds, "README.md") || !slices.Contains(mds, "docs/glossary.md") {
		t.Fatalf("README.md or docs/glossary.md missing from %v", mds)
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		anchors[rel] = Anchors(string(b))
		return anchors[rel]
	}
	checked := 0
	for _, md := range mds {
		b, err := os.ReadFile(filepath.Join(root, md))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range Links(string(b)) {
			switch problem := checkLink(root, md, l.Dest, anchorsOf); {
			case strings.HasPrefix(problem, pendingPrefix):
				t.Logf("%s:%d: link %q: %s", md, l.Line, l.Dest, problem)
			case problem != "":
				t.Errorf("%s:%d: link %q: %s", md, l.Line, l.Dest, problem)
			}
			checked++
		}
	}
	t.Logf("%d Markdown files, %d links", len(mds), checked)
}

// checkLink returns what is wrong with the link dest in document md, or "".
func checkLink(root, md, dest string, anchorsOf func(string) map[string]bool) string {
	u, err := url.Parse(dest)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	if u.Scheme != "" || u.Host != "" {
		return "" // http(s), mailto: not this test's business
	}
	target := md
	if u.Path != "" {
		if strings.HasPrefix(u.Path, "/") {
			return "absolute path: write it relative to the document"
		}
		target = path.Clean(path.Join(path.Dir(md), u.Path))
		if target == ".." || strings.HasPrefix(target, "../") {
			return "leaves the repository"
		}
	}
	fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(target)))
	if err != nil {
		for p := range pending {
			if target == p || strings.HasPrefix(target, p+"/") {
				return pendingPrefix + target
			}
		}
		return "no such file or directory: " + target
	}
	if u.Fragment == "" || fi.IsDir() || !strings.HasSuffix(target, ".md") {
		return ""
	}
	if !anchorsOf(target)[u.Fragment] {
		return "no heading #" + u.Fragment + " in " + target
	}
	return ""
}

// trackedFiles returns the files git tracks in the checkout at root, with
// slashes.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := release.TrackedFiles(root, ".")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		files[i] = filepath.ToSlash(f)
	}
	return files
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := release.Root(".")
	if err == nil {
		_, err = release.TrackedFiles(root, "README.md")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not in a git checkout: %v", err)
		}
		t.Skipf("not in a git checkout: %v", err)
	}
	return root
}

func TestLinks(t *testing.T) {
	md := strings.Join([]string{
		"See [the CLI](docs/cli.md) and ![shot](a/b.png \"title\").", // 1
		"A [ref]: not a definition, and `[code](not/a/link.md)`.",    // 2
		"```sh",                               // 3
		"[fenced](not/a/link.md)",             // 4
		"```",                                 // 5
		"[x]: docs/x.md",                      // 6
		"[y](<with space.md>) [z](p(1).md#a)", // 7
		"``` `[span](no.md)` ``` [after](yes.md)", // 8
		`[w](#local)`,    // 9
		"~~~",            // 10
		"[tilde](no.md)", // 11
		"~~~",            // 12
	}, "\n")
	var got []string
	for _, l := range Links(md) {
		got = append(got, strings.Join([]string{itoa(l.Line), l.Dest}, " "))
	}
	want := []string{"1 docs/cli.md", "1 a/b.png", "6 docs/x.md", "7 with space.md", "7 p(1).md#a", "8 yes.md", "9 #local"}
	if !slices.Equal(got, want) {
		t.Errorf("Links:\n got %q\nwant %q", got, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestAnchors(t *testing.T) {
	md := strings.Join([]string{
		"# The idvault command",
		"## Least privilege for the vault's credentials",
		"### The opt-out: `Config.Detection.AlertOnly`",
		"## Put → Grant → Handler",
		"## Notes",
		"## Notes",
		"```",
		"# not a heading",
		"```",
		"#not a heading either",
		"## See [the CLI](cli.md) now ##",
		"## 2021: 1.71 million images",
	}, "\n")
	got := Anchors(md)
	for _, want := range []string{
		"the-idvault-command", "least-privilege-for-the-vaults-credentials",
		"the-opt-out-configdetectionalertonly", "put--grant--handler", "notes", "notes-1",
		"see-the-cli-now", "2021-171-million-images",
	} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] || got["not-a-heading-either"] || len(got) != 8 {
		t.Errorf("anchors %v", got)
	}
}

// FuzzLinks: the parsers never panic, every destination is text of the
// document on the line given, and every anchor is a slug.
func FuzzLinks(f *testing.F) {
	for _, s := range []string{"[a](b)", "# H\n[x](#h)", "```\n[a](b)\n```", "[r]: <x y>", "`[a](b)` [c](d(e))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, md string) {
		lines := strings.Split(md, "\n")
		for _, l := range Links(md) {
			if l.Line < 1 || l.Line > len(lines) || !strings.Contains(lines[l.Line-1], l.Dest) {
				t.Fatalf("link %+v is not on its line", l)
			}
		}
		for a := range Anchors(md) {
			if Slug(a) != a {
				t.Fatalf("anchor %q is not a slug", a)
			}
		}
	})
}
