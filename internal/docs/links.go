package docs

import (
	"strconv"
	"strings"
	"unicode"
)

// A Link is one link destination found in a Markdown document.
type Link struct {
	Line int    // 1-based line of the link's opening bracket
	Dest string // the destination as written, without <> or a title
}

// Links returns the link destinations of a Markdown document, in order:
// inline links and images, and reference definitions. Text inside fenced
// code blocks (``` or ~~~) and code spans is skipped.
func Links(md string) []Link {
	var links []Link
	fence := ""
	for i, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t\r") == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" && len(line)-len(trimmed) < 4 {
			fence = f
			continue
		}
		if d, ok := refDefinition(trimmed); ok && len(line)-len(trimmed) < 4 {
			links = append(links, Link{Line: i + 1, Dest: d})
			continue
		}
		for _, d := range inlineLinks(line) {
			links = append(links, Link{Line: i + 1, Dest: d})
		}
	}
	return links
}

// fenceOf returns the fence a line opens (``` or ~~~, or longer), or "".
func fenceOf(s string) string {
	for _, c := range []string{"`", "~"} {
		n := len(s) - len(strings.TrimLeft(s, c))
		if n >= 3 {
			if c == "`" && strings.Contains(s[n:], "`") {
				return "" // a code span, not a fence
			}
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// refDefinition parses "[label]: dest" (a reference definition).
func refDefinition(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") || strings.HasPrefix(s, "[^") {
		return "", false
	}
	end := strings.Index(s, "]:")
	if end < 2 || strings.ContainsAny(s[1:end], "[]") {
		return "", false
	}
	rest := strings.TrimSpace(s[end+2:])
	if rest == "" {
		return "", false
	}
	return destination(rest)
}

// inlineLinks returns the destinations of "](dest)" outside code spans.
func inlineLinks(line string) []string {
	var out []string
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\':
			i++ // an escaped character
		case line[i] == '`':
			n := len(line[i:]) - len(strings.TrimLeft(line[i:], "`"))
			closing := strings.Index(line[i+n:], strings.Repeat("`", n))
			if closing < 0 {
				i += n - 1 // no closing run: the backticks are literal
				continue
			}
			i += n + closing + n - 1
		case strings.HasPrefix(line[i:], "]("):
			if d, ok := destination(line[i+2:]); ok {
				out = append(out, d)
			}
		}
	}
	return out
}

// destination reads a link destination at the start of s: <dest> or a
// run without spaces whose parentheses balance, ended by ")", a space
// (a title follows) or the end of the line.
func destination(s string) (string, bool) {
	if strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", false
		}
		return s[1:end], true
	}
	depth := 0
	for i, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')':
			if depth == 0 {
				return s[:i], i > 0
			}
			depth--
		case unicode.IsSpace(r):
			return s[:i], i > 0 && depth == 0
		}
	}
	return s, s != "" && depth == 0
}

// Anchors returns the fragments GitHub gives the document's headings
// (ATX headings, "#" to "######", outside code blocks): the heading's text
// without Markdown markup, lower-cased, every character but letters,
// digits, spaces, "-" and "_" dropped, spaces turned into "-", and a
// repeated fragment suffixed -1, -2, ...
func Anchors(md string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t\r") == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" {
			fence = f
			continue
		}
		if len(line)-len(trimmed) >= 4 {
			continue
		}
		level := len(trimmed) - len(strings.TrimLeft(trimmed, "#"))
		if level == 0 || level > 6 || (len(trimmed) > level && trimmed[level] != ' ' && trimmed[level] != '\t') {
			continue
		}
		slug := Slug(strings.TrimRight(strings.TrimSpace(trimmed[level:]), "#"))
		if n, ok := seen[slug]; ok {
			seen[slug] = n + 1
			for {
				cand := slug + "-" + strconv.Itoa(n+1)
				if !anchors[cand] {
					slug = cand
					break
				}
				n++
			}
		} else {
			seen[slug] = 0
		}
		anchors[slug] = true
	}
	return anchors
}

// Slug turns a heading's text into its GitHub fragment.
func Slug(heading string) string {
	text := stripLinks(strings.TrimSpace(heading))
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// stripLinks replaces [text](dest) by text, as GitHub does in a heading.
func stripLinks(s string) string {
	for {
		open := strings.Index(s, "](")
		if open < 0 {
			return s
		}
		end := strings.IndexByte(s[open:], ')')
		if end < 0 {
			return s
		}
		s = s[:open] + s[open+end+1:]
	}
}
