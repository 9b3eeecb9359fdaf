// Package docs parses the repository's Markdown just enough to check it:
// every relative link must name a file or directory of the checkout, and
// every #fragment a heading of its target, so that moving a section from
// the README into docs/ cannot leave a dangling link behind.
//
// Links extracts inline links and images (`[text](dest)`, `![alt](dest)`)
// and reference definitions (`[label]: dest`), outside fenced code blocks
// and code spans. Anchors lists the fragment each heading gets on GitHub.
// The test in this package runs both over every *.md file git would commit.
package docs
