package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synonyms are names this project used for a concept that has one name
// now: each maps to the word to write, and the term docs/glossary.md
// defines (in bold) for it.
var synonyms = map[string]struct{ word, term string }{
	"spend entry":        {"ledger entry", "ledger entry"},
	"spend entries":      {"ledger entries", "ledger entry"},
	"spent-token entr":   {"ledger entry", "ledger entry"},
	"single-use link":    {"single-use token", "token"},
	"key object":         {"key record", "key record"},
	"retention deadline": {"expiry", "expiry"},
}

// TestOneNamePerConcept: the README, docs/ (the glossary aside, which
// lists the old names), the CLI's sources (its help) and every package
// doc use the glossary's word, never an old synonym. CHANGELOG.md keeps
// its history as written.
func TestOneNamePerConcept(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "glossary.md"))
	if err != nil {
		t.Fatal(err)
	}
	glossary := strings.ToLower(string(b))
	for old, w := range synonyms {
		if !strings.Contains(glossary, "**"+w.term+"**") {
			t.Errorf("glossary.md does not define **%s** (the word for %q)", w.term, old)
		}
	}
	for _, f := range trackedFiles(t, root) {
		md := strings.HasSuffix(f, ".md") && (f == "README.md" || strings.HasPrefix(f, "docs/")) && f != "docs/glossary.md"
		cli := strings.HasPrefix(f, "cmd/idvault/") && strings.HasSuffix(f, ".go") && !strings.HasSuffix(f, "_test.go")
		if !md && !cli && !strings.HasSuffix(f, "/doc.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(strings.ToLower(string(b)), "\n") {
			for old, w := range synonyms {
				if strings.Contains(line, old) {
					t.Errorf("%s:%d: %q: the glossary's word is %q (docs/glossary.md)", f, i+1, old, w.word)
				}
			}
		}
	}
}
