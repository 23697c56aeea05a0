package build

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Scratch is the name of the empty base image.
const Scratch = "scratch"

// LayoutPrefix marks a base read from a local OCI image layout:
// "oci:DIR" or "oci:DIR@sha256:…".
const LayoutPrefix = "oci:"

// Base is a base image resolved to a digest. Every read of it after
// resolution goes through that digest, so a tag moved mid-build cannot mix
// two bases into one index.
type Base struct {
	// Name is the base as configured ("scratch", a reference or oci:DIR).
	Name string
	// Ref is the reference recorded in org.opencontainers.image.base.name
	// (empty for scratch).
	Ref string
	// Digest is the resolved digest of the index or image (zero for scratch).
	Digest v1.Hash
	// MediaType is the media type of the base's top-level manifest.
	MediaType types.MediaType

	index v1.ImageIndex // set for a multi-platform base
	image v1.Image      // set for a single-platform base
}

// IsScratch reports whether b is the empty base.
func (b *Base) IsScratch() bool { return b.Name == Scratch }

// OCI reports whether images on this base use OCI media types (else Docker
// schema 2).
func (b *Base) OCI() bool {
	switch b.MediaType {
	case types.DockerManifestList, types.DockerManifestSchema2:
		return false
	}
	return true
}

// ResolveBase resolves name, which is "scratch", an image reference (tag or
// digest) or oci:DIR[@digest], to a Base. A registry reference is resolved
// to its digest with one request; image data is fetched lazily, by digest.
func ResolveBase(ctx context.Context, ref string, opts ...remote.Option) (*Base, error) {
	switch {
	case ref == "" || ref == Scratch:
		return &Base{Name: Scratch, MediaType: types.OCIImageIndex}, nil
	case strings.HasPrefix(ref, LayoutPrefix):
		return resolveLayoutBase(ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing base %q: %w", ref, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("resolving base %s: %w", ref, err)
	}
	dig := r.Context().Digest(desc.Digest.String())
	b := &Base{Name: ref, Ref: r.Name(), Digest: desc.Digest, MediaType: desc.MediaType}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("reading base index %s: %w", dig, err)
		}
		b.index = idx
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("reading base image %s: %w", dig, err)
		}
		b.image = img
	default:
		return nil, fmt.Errorf("base %s: media type %q is neither an image nor an index", ref, desc.MediaType)
	}
	return b, nil
}

func resolveLayoutBase(ref string) (*Base, error) {
	root, desc, err := OpenLayoutRef(ref, nil)
	if err != nil {
		return nil, err
	}
	b := &Base{Name: ref, Ref: ref, Digest: desc.Digest, MediaType: desc.MediaType}
	switch {
	case desc.MediaType.IsIndex():
		b.index, err = root.ImageIndex(desc.Digest)
	case desc.MediaType.IsImage():
		b.image, err = root.Image(desc.Digest)
	default:
		err = fmt.Errorf("media type %q is neither an image nor an index", desc.MediaType)
	}
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", ref, err)
	}
	return b, nil
}

// OpenLayoutRef opens "oci:DIR" or "oci:DIR@sha256:…" and returns the
// layout's root index and the descriptor the reference names. Without a
// digest the layout must hold exactly one manifest, not counting entries
// for which skip (when set) returns true.
func OpenLayoutRef(ref string, skip func(v1.Descriptor) bool) (v1.ImageIndex, v1.Descriptor, error) {
	spec := strings.TrimPrefix(ref, LayoutPrefix)
	dir, dgst, hasDigest := strings.Cut(spec, "@")
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("opening layout %s: %w", dir, err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading layout %s: %w", dir, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("reading layout %s: %w", dir, err)
	}
	if hasDigest {
		h, err := v1.NewHash(dgst)
		if err != nil {
			return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
		}
		for _, d := range im.Manifests {
			if d.Digest == h {
				return root, d, nil
			}
		}
		return nil, v1.Descriptor{}, fmt.Errorf("%s: layout has no manifest %s", ref, h)
	}
	var found *v1.Descriptor
	for i := range im.Manifests {
		d := im.Manifests[i]
		if skip != nil && skip(d) {
			continue
		}
		if found != nil && found.Digest != d.Digest {
			return nil, v1.Descriptor{}, fmt.Errorf("%s: layout holds several manifests; name one with oci:%s@sha256:…", ref, dir)
		}
		found = &d
	}
	if found == nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: layout holds no manifest", ref)
	}
	return root, *found, nil
}

// Image returns the base image for platform p and the digest of its
// manifest (empty for scratch).
func (b *Base) Image(p v1.Platform) (v1.Image, string, error) {
	if b.IsScratch() {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		return img, "", nil
	}
	if b.image != nil {
		cf, err := b.image.ConfigFile()
		if err != nil {
			return nil, "", fmt.Errorf("reading base config: %w", err)
		}
		have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if !samePlatform(p, have) {
			return nil, "", fmt.Errorf("base %s is a single-platform image for %s, not %s", b.Name, platformString(have), platformString(p))
		}
		if err := checkImageTypes(b.image); err != nil {
			return nil, "", fmt.Errorf("base %s: %w", b.Name, err)
		}
		return b.image, b.Digest.String(), nil
	}
	desc, err := b.find(p)
	if err != nil {
		return nil, "", err
	}
	img, err := b.index.Image(desc.Digest)
	if err != nil {
		return nil, "", fmt.Errorf("reading base image for %s: %w", platformString(p), err)
	}
	if err := checkImageTypes(img); err != nil {
		return nil, "", fmt.Errorf("base %s (%s, %s): %w", b.Name, platformString(p), desc.Digest, err)
	}
	return img, desc.Digest.String(), nil
}

// layerTypes are the layer media types an image runtime can unpack.
var layerTypes = map[types.MediaType]bool{
	types.DockerLayer: true, types.DockerForeignLayer: true, types.DockerUncompressedLayer: true,
	types.OCILayer: true, types.OCILayerZStd: true, types.OCIUncompressedLayer: true,
	types.OCIRestrictedLayer: true, types.OCIUncompressedRestrictedLayer: true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": true,
}

// checkImageTypes fails, naming the type, unless img's manifest really is
// an image manifest (the index entry's media type is only a claim about
// the bytes behind the digest) and every layer is a filesystem layer.
func checkImageTypes(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	if m.MediaType != "" && !m.MediaType.IsImage() {
		return fmt.Errorf("manifest has media type %q, not an image manifest", m.MediaType)
	}
	if m.Config.MediaType != "" && !m.Config.MediaType.IsConfig() {
		return fmt.Errorf("config has media type %q, not an image config", m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			return fmt.Errorf("layer %d (%s) has media type %q, not a filesystem layer", i, l.Digest, l.MediaType)
		}
	}
	return nil
}

// CheckPlatforms fails, naming every missing platform, unless the base has
// an image for each of ps.
func (b *Base) CheckPlatforms(ps []v1.Platform) error {
	if b.IsScratch() {
		return nil
	}
	var missing []string
	if b.image != nil {
		cf, err := b.image.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading base config: %w", err)
		}
		have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		for _, p := range ps {
			if !samePlatform(p, have) {
				missing = append(missing, platformString(p))
			}
		}
	} else {
		for _, p := range ps {
			if _, err := b.find(p); err != nil {
				missing = append(missing, platformString(p))
			}
		}
	}
	if len(missing) > 0 {
		have, _ := b.platforms()
		return fmt.Errorf("base %s has no image for %s (it has: %s)", b.Name, strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	return nil
}

func (b *Base) platforms() ([]string, error) {
	if b.image != nil {
		cf, err := b.image.ConfigFile()
		if err != nil {
			return nil, err
		}
		return []string{platformString(v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant})}, nil
	}
	im, err := b.index.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range im.Manifests {
		if d.Platform != nil && !unknownPlatform(d.Platform) {
			out = append(out, platformString(*d.Platform))
		}
	}
	return out, nil
}

// AllPlatforms, as a target's only platform, means every linux platform
// of the base (as ko's --platform=all).
const AllPlatforms = "all"

// LinuxPlatforms lists the base's linux platforms, in index order:
// attestation manifests (unknown/unknown, or annotated as such), nested
// indexes and other operating systems are skipped. Scratch has none: "all"
// means nothing there, and that is an error.
func (b *Base) LinuxPlatforms() ([]v1.Platform, error) {
	if b.IsScratch() {
		return nil, fmt.Errorf("platforms: %s needs a base image; scratch has no platforms (list them)", AllPlatforms)
	}
	if b.image != nil {
		cf, err := b.image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading base config: %w", err)
		}
		if cf.OS != "linux" {
			return nil, fmt.Errorf("base %s is %s/%s: no linux platform", b.Name, cf.OS, cf.Architecture)
		}
		return []v1.Platform{{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}, nil
	}
	im, err := b.index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading base index %s: %w", b.Name, err)
	}
	var out []v1.Platform
	seen := map[string]bool{}
	for _, d := range im.Manifests {
		if d.Platform == nil || unknownPlatform(d.Platform) || !d.MediaType.IsImage() || d.Platform.OS != "linux" ||
			d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		p := v1.Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}
		if k := platformString(p); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("base %s has no linux platform", b.Name)
	}
	return out, nil
}

// find picks the index entry for p, skipping attestation manifests
// (platform unknown/unknown) and nested indexes.
func (b *Base) find(p v1.Platform) (*v1.Descriptor, error) {
	im, err := b.index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading base index %s: %w", b.Name, err)
	}
	var fallback *v1.Descriptor
	for i := range im.Manifests {
		d := &im.Manifests[i]
		if d.Platform == nil || unknownPlatform(d.Platform) || !d.MediaType.IsImage() {
			continue
		}
		if !samePlatform(p, *d.Platform) {
			continue
		}
		if d.Platform.Variant == p.Variant {
			return d, nil
		}
		if fallback == nil {
			fallback = d
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, fmt.Errorf("base %s has no image for %s", b.Name, platformString(p))
}

func unknownPlatform(p *v1.Platform) bool {
	return p.OS == "unknown" || p.Architecture == "unknown"
}
