package resolve

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// locate returns the edit that replaces the scalar n in src by repl, in
// n's quoting style.
func locate(src []byte, pos *positions, n *yaml.Node, repl string) (edit, error) {
	fail := func(why string) (edit, error) {
		return edit{}, fmt.Errorf("line %d: cannot locate value %q in the source: %s", n.Line, n.Value, why)
	}
	off, ok := pos.offset(n.Line, n.Column)
	if !ok {
		return fail("position out of range")
	}
	// The node's position is that of its properties (&anchor, !tag), if any.
	for off < len(src) && (src[off] == '&' || src[off] == '!') {
		for off < len(src) && !isBlank(src[off]) && breakLen(src, off) == 0 {
			off++
		}
		off = skipSpace(src, off)
	}
	e := edit{start: off, line: n.Line}
	switch n.Style &^ (yaml.TaggedStyle | yaml.FlowStyle) {
	case 0: // plain
		end := off + len(n.Value)
		if !bytes.HasPrefix(src[off:], []byte(n.Value)) || !plainEnd(src, end) {
			return fail("plain scalar not found")
		}
		e.end, e.text = end, repl
	case yaml.SingleQuotedStyle:
		end, ok := quotedEnd(src, off, '\'')
		if !ok {
			return fail("single-quoted scalar not found")
		}
		e.end, e.text = end, "'"+repl+"'"
	case yaml.DoubleQuotedStyle:
		end, ok := quotedEnd(src, off, '"')
		if !ok {
			return fail("double-quoted scalar not found")
		}
		e.end, e.text = end, `"`+repl+`"`
	default:
		return edit{}, fmt.Errorf("line %d: %q is a block scalar (| or >); write it as a plain or quoted scalar", n.Line, n.Value)
	}
	return e, nil
}

// quotedEnd returns the offset just past the quoted scalar that starts at
// src[off] with quote q.
func quotedEnd(src []byte, off int, q byte) (int, bool) {
	if off >= len(src) || src[off] != q {
		return 0, false
	}
	for i := off + 1; i < len(src); i++ {
		switch {
		case q == '"' && src[i] == '\\':
			i++ // the escaped character is never the closing quote
		case src[i] == q && q == '\'' && i+1 < len(src) && src[i+1] == '\'':
			i++ // '' is an escaped quote
		case src[i] == q:
			return i + 1, true
		}
	}
	return 0, false
}

// plainEnd reports whether a plain scalar can end at src[i].
func plainEnd(src []byte, i int) bool {
	if i >= len(src) {
		return true
	}
	switch src[i] {
	case ' ', '\t', ',', ']', '}', ':':
		return true
	}
	return breakLen(src, i) > 0
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// skipSpace skips blanks, line breaks and comments from src[off].
func skipSpace(src []byte, off int) int {
	for off < len(src) {
		switch {
		case isBlank(src[off]):
			off++
		case breakLen(src, off) > 0:
			off += breakLen(src, off)
		case src[off] == '#':
			for off < len(src) && breakLen(src, off) == 0 {
				off++
			}
		default:
			return off
		}
	}
	return off
}

// breakLen returns the length of the line break at src[i], or 0. Like the
// parser, it counts CR LF, CR, LF, NEL, LS and PS as line breaks.
func breakLen(src []byte, i int) int {
	switch {
	case src[i] == '\r' && i+1 < len(src) && src[i+1] == '\n':
		return 2
	case src[i] == '\r' || src[i] == '\n':
		return 1
	case src[i] == 0xC2 && i+1 < len(src) && src[i+1] == 0x85:
		return 2
	case src[i] == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && (src[i+2] == 0xA8 || src[i+2] == 0xA9):
		return 3
	}
	return 0
}

// positions converts the parser's line and column (1-based, counted in
// characters) to byte offsets in src.
type positions struct {
	src   []byte
	lines []int // offset of each line
	// The last conversion: nodes come in source order, so resuming from it
	// keeps a long line (a big flow sequence) linear, not quadratic.
	line, col, off int
}

// newPositions indexes the lines of src as the parser counts them (a
// leading UTF-8 byte order mark is not part of line 1).
func newPositions(src []byte) *positions {
	start := 0
	if bytes.HasPrefix(src, []byte{0xEF, 0xBB, 0xBF}) {
		start = 3
	}
	lines := []int{start}
	for i := start; i < len(src); {
		if n := breakLen(src, i); n > 0 {
			i += n
			lines = append(lines, i)
			continue
		}
		i++
	}
	return &positions{src: src, lines: lines}
}

// offset returns the byte offset of line and column, if they are in src.
func (p *positions) offset(line, col int) (int, bool) {
	if line < 1 || line > len(p.lines) || col < 1 {
		return 0, false
	}
	c, off := 1, p.lines[line-1]
	if line == p.line && col >= p.col {
		c, off = p.col, p.off
	}
	for ; c < col; c++ {
		if off >= len(p.src) || breakLen(p.src, off) > 0 {
			return 0, false
		}
		_, w := utf8.DecodeRune(p.src[off:])
		off += w
	}
	p.line, p.col, p.off = line, col, off
	return off, true
}

// apply returns src with the edits made.
func apply(src []byte, edits []edit) ([]byte, error) {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	var b bytes.Buffer
	b.Grow(len(src) + 64*len(edits))
	last := 0
	for _, e := range edits {
		if e.start < last {
			return nil, fmt.Errorf("internal error: overlapping replacements at line %d", e.line)
		}
		b.Write(src[last:e.start])
		b.WriteString(e.text)
		last = e.end
	}
	b.Write(src[last:])
	return b.Bytes(), nil
}
