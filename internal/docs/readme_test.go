package docs

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxReadmeLines keeps the README a front door (issue 23): the manual is
// in docs/.
const maxReadmeLines = 250

func readme(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text of the README section "## name", up to the
// next "## ".
func section(t *testing.T, md, name string) string {
	t.Helper()
	_, sec, ok := strings.Cut(md, "\n## "+name+"\n")
	if !ok {
		t.Fatalf("README has no %q section", "## "+name)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	return sec
}

func TestReadmeShort(t *testing.T) {
	md := readme(t, repoRoot(t))
	if n := strings.Count(md, "\n"); n > maxReadmeLines {
		t.Errorf("README.md has %d lines, more than %d: move the detail into docs/", n, maxReadmeLines)
	}
}

// TestReadmeUsage: the README's usage block is the body of
// Example_everydayPath between its BEGIN README and END README markers, so
// what a newcomer copies compiles and runs.
func TestReadmeUsage(t *testing.T) {
	root := repoRoot(t)
	sec := section(t, readme(t, root), "Usage")
	_, block, ok := strings.Cut(sec, "```go\n")
	if !ok {
		t.Fatal("no Go block in the Usage section")
	}
	block, _, _ = strings.Cut(block, "```")
	src, err := os.ReadFile(filepath.Join(root, "vault", "readme_example_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok1 := strings.Cut(string(src), "\t// BEGIN README\n")
	body, _, ok2 := strings.Cut(body, "\t// END README")
	if !ok1 || !ok2 {
		t.Fatal("vault/readme_example_test.go has no BEGIN README / END README markers")
	}
	var want strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(l, "\t"))
	}
	if got, want := strings.TrimSpace(block), strings.TrimSpace(want.String()); got != want || len(got) < 100 {
		t.Errorf("the README's usage block differs from Example_everydayPath:\n--- README\n%s\n--- example\n%s", got, want)
	}
	if n := strings.Count(strings.TrimSpace(block), "\n") + 1; n > 30 {
		t.Errorf("the usage block has %d lines: keep it short", n)
	}
}

// TestReadmeLayout: the Layout table names every directory of the
// repository that holds Go code (every package and module), and nothing
// else.
func TestReadmeLayout(t *testing.T) {
	root := repoRoot(t)
	var dirs []string
	for _, f := range trackedFiles(t, root) {
		if !strings.HasSuffix(f, ".go") || strings.Contains("/"+f, "/testdata/") {
			continue
		}
		if d := path.Dir(f) + "/"; d != "./" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	var listed []string
	for _, line := range strings.Split(section(t, readme(t, root), "Layout"), "\n") {
		if p, ok := strings.CutPrefix(line, "| `"); ok {
			p, _, _ = strings.Cut(p, "`")
			listed = append(listed, p)
		}
	}
	for _, d := range dirs {
		if !slices.Contains(listed, d) {
			t.Errorf("README Layout: %s is missing", d)
		}
	}
	for _, p := range listed {
		if !slices.Contains(dirs, p) {
			t.Errorf("README Layout: %s holds no Go code (gone or misspelt?)", p)
		}
	}
}
