package resolve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"
)

// Scheme prefixes a placeholder value: any YAML scalar value that is exactly
// Scheme+TARGET (slipway://hello) is replaced by TARGET's digest reference.
const Scheme = "slipway://"

// UnknownTargetError reports a placeholder naming a target that has no pushed
// reference.
type UnknownTargetError struct {
	// Target is the name after Scheme.
	Target string
	// Line is the 1-based line of the placeholder.
	Line int
	// Known lists the targets that have a reference, sorted.
	Known []string
}

// Error names the target, the line and the targets that have a reference.
func (e *UnknownTargetError) Error() string {
	known := "none"
	if len(e.Known) > 0 {
		known = strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("line %d: %s%s: unknown target %q (pushed targets: %s)", e.Line, Scheme, e.Target, e.Target, known)
}

// Pushed is what slipway pushed for one target.
type Pushed struct {
	// Ref is the digest reference, REPO@sha256:….
	Ref string
	// Tags are the tags slipway pointed at Ref in the same push.
	Tags []string
}

// Warning is a value naming a target's repository that Resolve left alone
// because it does not name what slipway pushed: another tag, or another
// digest.
type Warning struct {
	// Line is the 1-based line of the value.
	Line int
	// Value is the value as written.
	Value string
	// Target is the target whose repository the value names.
	Target string
	// Reason says why it was left alone.
	Reason string
}

// String is "line N: image "VALUE" …; left alone".
func (w Warning) String() string {
	return fmt.Sprintf("line %d: image %q names the repository of target %s but %s; left alone", w.Line, w.Value, w.Target, w.Reason)
}

// Resolve rewrites the image references in the YAML stream in (one or more
// documents) and reports how many values it replaced. Exactly these are
// rewritten, to the pushed REPO@DIGEST (REPO as written):
//
//   - every scalar value (not key) that is exactly slipway://TARGET, anywhere
//     in a document; a TARGET missing from pushed is an *UnknownTargetError;
//   - a value of an "image" key that is a target's repository with no tag
//     and no digest (REPO);
//   - a value of an "image" key that is a target's repository with a tag
//     slipway pushed for that target (REPO:TAG, TAG in Pushed.Tags).
//
// Any other "image" value naming a target's repository (another tag, as
// crane:v9.9.9; a digest other than the pushed one) is left alone with a
// Warning: it pins something slipway did not push, and replacing it would
// silently deploy another version. A value already pinned to the pushed
// digest is left alone without a warning (resolving twice changes
// nothing). Repositories compare after normalization
// (docker.io/library/x == x), never by prefix.
//
// pushed maps a target name to what was pushed, as returned by
// LoadResults. Only the replaced values change: comments, indentation, key
// order, quoting style, line endings and document separators are kept
// byte for byte. When nothing changes, out is in. Invalid YAML is an error
// that names the line; nothing is returned with it.
//
// Not resolved: aliases (the anchored value is, where it is defined), block
// scalars (an error if one matches), and structured references such as
// Kustomize images: or Helm image.repository/tag pairs.
func Resolve(in []byte, pushed map[string]Pushed) (out []byte, changed int, warnings []Warning, err error) {
	idx, err := newIndex(pushed)
	if err != nil {
		return nil, 0, nil, err
	}
	return idx.resolve(in)
}

// index is refs, validated and indexed by repository.
type index struct {
	refs   map[string]string
	byRepo map[string][]pushed // key: name.Repository.Name()
	known  []string
}

type pushed struct {
	target string
	digest string // sha256:…
	tags   []string
}

func newIndex(targets map[string]Pushed) (*index, error) {
	idx := &index{refs: map[string]string{}, byRepo: map[string][]pushed{}}
	for t, p := range targets {
		ref := p.Ref
		d, err := name.NewDigest(ref)
		if err != nil {
			return nil, fmt.Errorf("target %s: reference %q: %w", t, ref, err)
		}
		if !plainSafe(ref) {
			return nil, fmt.Errorf("target %s: reference %q has characters not allowed in an image reference", t, ref)
		}
		repo := d.Context().Name()
		idx.refs[t] = ref
		idx.byRepo[repo] = append(idx.byRepo[repo], pushed{target: t, digest: d.DigestStr(), tags: p.Tags})
		idx.known = append(idx.known, t)
	}
	sort.Strings(idx.known)
	for _, ps := range idx.byRepo {
		slices.SortFunc(ps, func(a, b pushed) int { return strings.Compare(a.target, b.target) })
	}
	return idx, nil
}

// plainSafe reports whether s can be written as a plain YAML scalar in any
// context (block or flow) without changing its meaning.
func plainSafe(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '-', c == '/', c == ':', c == '@', c == '+':
		default:
			return false
		}
	}
	return s[0] != '-' && s[0] != ':' && s[0] != '@'
}

func (idx *index) resolve(in []byte) ([]byte, int, []Warning, error) {
	docs, err := parse(in)
	if err != nil {
		return nil, 0, nil, err
	}
	edits, warns, err := idx.plan(in, docs)
	if err != nil {
		return nil, 0, nil, err
	}
	if len(edits) == 0 {
		return in, 0, warns, nil
	}
	out, err := apply(in, edits)
	if err != nil {
		return nil, 0, nil, err
	}
	// The splice keeps the quoting of each value and writes only characters
	// that are plain-safe, so this cannot fail; check it anyway rather than
	// hand back a manifest that no longer parses.
	if _, err := parse(out); err != nil {
		return nil, 0, nil, fmt.Errorf("internal error: rewritten YAML does not parse: %w", err)
	}
	return out, len(edits), warns, nil
}

// parse decodes every document of the stream in.
func parse(in []byte) (docs []*yaml.Node, err error) {
	if bytes.HasPrefix(in, []byte{0xFE, 0xFF}) || bytes.HasPrefix(in, []byte{0xFF, 0xFE}) {
		return nil, errors.New("invalid YAML: UTF-16 input is not supported")
	}
	// The parser works on untrusted input; a bug in it must not take down
	// the command.
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, fmt.Errorf("invalid YAML: parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(in))
	for {
		n := new(yaml.Node)
		if err := dec.Decode(n); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		docs = append(docs, n)
	}
}

// edit replaces src[start:end] by text.
type edit struct {
	start, end int
	text       string
	line       int
}

// plan finds the values to replace and where they are in src.
func (idx *index) plan(src []byte, docs []*yaml.Node) ([]edit, []Warning, error) {
	pos := newPositions(src)
	var edits []edit
	var warns []Warning
	var walk func(n *yaml.Node, image bool) error
	walk = func(n *yaml.Node, image bool) error {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				if err := walk(c, false); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				isImage := k.Kind == yaml.ScalarNode && k.Value == "image"
				if err := walk(n.Content[i+1], isImage); err != nil {
					return err
				}
			}
		case yaml.ScalarNode:
			repl, ok, warn, err := idx.replacement(n, image)
			if warn != nil {
				warns = append(warns, *warn)
			}
			if err != nil || !ok {
				return err
			}
			e, err := locate(src, pos, n, repl)
			if err != nil {
				return err
			}
			edits = append(edits, e)
		}
		// Aliases are not followed: the anchored node is visited where it
		// is defined.
		return nil
	}
	for _, d := range docs {
		if err := walk(d, false); err != nil {
			return nil, nil, err
		}
	}
	return edits, warns, nil
}

// replacement returns the new value of the scalar n, if it has one, or a
// warning when n names a target's repository but not what was pushed.
// image reports whether n is the value of an "image" key.
func (idx *index) replacement(n *yaml.Node, image bool) (string, bool, *Warning, error) {
	if t, ok := strings.CutPrefix(n.Value, Scheme); ok {
		ref, ok := idx.refs[t]
		if !ok {
			return "", false, nil, &UnknownTargetError{Target: t, Line: n.Line, Known: idx.known}
		}
		return ref, true, nil, nil
	}
	if !image {
		return "", false, nil, nil
	}
	v := n.Value
	named, digest, pinned := strings.Cut(v, "@")
	repo, tag := named, ""
	if i := strings.LastIndexByte(named, ':'); i > strings.LastIndexByte(named, '/') {
		repo, tag = named[:i], named[i+1:]
		if _, err := name.NewTag(named); err != nil {
			return "", false, nil, nil // not an image reference
		}
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		return "", false, nil, nil
	}
	ps := idx.byRepo[r.Name()]
	if len(ps) == 0 {
		return "", false, nil, nil
	}
	warn := func(p pushed, why string) (string, bool, *Warning, error) {
		return "", false, &Warning{Line: n.Line, Value: v, Target: p.target, Reason: why}, nil
	}
	if pinned {
		for _, p := range ps {
			if p.digest == digest && (tag == "" || slices.Contains(p.tags, tag)) {
				return "", false, nil, nil // already what was pushed
			}
		}
		return warn(ps[0], fmt.Sprintf("is pinned to %s, not the digest slipway pushed (%s)", short(digest), short(ps[0].digest)))
	}
	if tag != "" {
		var withTag []pushed
		for _, p := range ps {
			if slices.Contains(p.tags, tag) {
				withTag = append(withTag, p)
			}
		}
		if len(withTag) == 0 {
			return warn(ps[0], fmt.Sprintf("with tag %s, which slipway did not push (pushed: %s)", tag, tagList(ps[0].tags)))
		}
		ps = withTag
	}
	for _, p := range ps[1:] {
		if p.digest != ps[0].digest {
			return "", false, nil, fmt.Errorf("line %d: image %q matches targets %s and %s with different digests; use %s%s instead",
				n.Line, v, ps[0].target, p.target, Scheme, ps[0].target)
		}
	}
	return repo + "@" + ps[0].digest, true, nil, nil
}

// short abbreviates a digest for messages: sha256:0123456789ab.
func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func tagList(tags []string) string {
	if len(tags) == 0 {
		return "no tag"
	}
	return strings.Join(tags, ", ")
}
