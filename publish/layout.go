package publish

import (
	"errors"
	"fmt"
	"os"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations slipway sets on the entries of an OCI layout's index.json.
const (
	// AnnotationRefName is the OCI tag annotation (one entry per tag).
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationTarget names the slipway target an entry belongs to.
	AnnotationTarget = "dev.slipway.target"
	// AnnotationKind is "image" for built indexes; signature and
	// attestation entries use other kinds.
	AnnotationKind = "dev.slipway.kind"
)

// KindImage marks an image index built by slipway in a layout.
const KindImage = "image"

// Layout writes images into an OCI image layout directory.
type Layout struct {
	path layout.Path
}

// NewLayout opens the OCI layout at dir, creating it when missing (see
// MkdirOutput).
func NewLayout(dir string) (*Layout, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening OCI layout %s: %w", dir, err)
		}
		if err := MkdirOutput(dir); err != nil {
			return nil, err
		}
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return nil, fmt.Errorf("creating OCI layout %s: %w", dir, err)
		}
	}
	return &Layout{path: p}, nil
}

// Path is the layout's directory.
func (l *Layout) Path() layout.Path { return l.path }

// WriteIndex stores idx for target with one index.json entry per tag (an
// untagged entry when tags is empty), replacing the target's earlier entries.
func (l *Layout) WriteIndex(target string, idx v1.ImageIndex, tags []string) (v1.Hash, error) {
	d, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := l.path.WriteIndex(idx); err != nil {
		return v1.Hash{}, fmt.Errorf("writing %s to %s: %w", target, l.path, err)
	}
	if err := l.path.RemoveDescriptors(func(desc v1.Descriptor) bool {
		return desc.Annotations[AnnotationTarget] == target && desc.Annotations[AnnotationKind] == KindImage
	}); err != nil {
		return v1.Hash{}, fmt.Errorf("updating %s: %w", l.path, err)
	}
	if len(tags) == 0 {
		tags = []string{""}
	}
	for _, t := range tags {
		ann := map[string]string{AnnotationTarget: target, AnnotationKind: KindImage}
		if t != "" {
			ann[AnnotationRefName] = t
		}
		if err := l.path.AppendIndex(idx, layout.WithAnnotations(ann)); err != nil {
			return v1.Hash{}, fmt.Errorf("updating %s: %w", l.path, err)
		}
	}
	return d, nil
}

// Entry is one built target found in a layout.
type Entry struct {
	Target string
	Digest v1.Hash
	Tags   []string
	Index  v1.ImageIndex
}

// Entries lists the targets in the layout written by WriteIndex, sorted by
// target name.
func (l *Layout) Entries() ([]Entry, error) {
	root, err := l.path.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.path, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.path, err)
	}
	byTarget := map[string]*Entry{}
	for _, desc := range im.Manifests {
		if desc.Annotations[AnnotationKind] != KindImage {
			continue
		}
		tgt := desc.Annotations[AnnotationTarget]
		e := byTarget[tgt]
		if e == nil {
			if !desc.MediaType.IsIndex() {
				return nil, fmt.Errorf("%s: entry for %s is %s, not an index", l.path, tgt, desc.MediaType)
			}
			idx, err := root.ImageIndex(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("%s: reading %s: %w", l.path, tgt, err)
			}
			e = &Entry{Target: tgt, Digest: desc.Digest, Index: idx}
			byTarget[tgt] = e
		} else if e.Digest != desc.Digest {
			return nil, fmt.Errorf("%s: target %s has two digests (%s, %s)", l.path, tgt, e.Digest, desc.Digest)
		}
		if t := desc.Annotations[AnnotationRefName]; t != "" {
			e.Tags = append(e.Tags, t)
		}
	}
	out := make([]Entry, 0, len(byTarget))
	for _, e := range byTarget {
		sort.Strings(e.Tags)
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}
