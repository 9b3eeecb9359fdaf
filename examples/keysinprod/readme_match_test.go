package keysinprod

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeMatches checks that docs/keys.md's "Keys in production" code
// block is the body of TestKeysInProduction between its BEGIN and END
// markers, so the section is what the test runs.
func TestReadmeMatches(t *testing.T) {
	readme, err := os.ReadFile("../../docs/keys.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n## Keys in production\n")
	if !ok {
		t.Fatal(`docs/keys.md has no "## Keys in production" section`)
	}
	_, block, ok := strings.Cut(sec, "```go\n")
	if !ok {
		t.Fatal("no Go block in the section")
	}
	block, _, _ = strings.Cut(block, "```")
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "// BEGIN README\n")
	body, _, _ = strings.Cut(body, "\t// END README")
	var want strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(l, "\t"))
	}
	if strings.TrimSpace(block) != strings.TrimSpace(want.String()) || len(block) < 100 {
		t.Fatalf("the docs/keys.md block differs from TestKeysInProduction:\n--- docs/keys.md\n%s\n--- test\n%s", block, want.String())
	}
}
