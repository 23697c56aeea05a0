package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// referrerImage is one bundle as the OCI 1.1 artifact cosign v3 writes: an
// image manifest with artifactType BundleMediaType, the empty config, the
// bundle as its one layer, the signed digest as subject and cosign's
// annotations (plus slipway's idempotence hints).
type referrerImage struct {
	raw    []byte
	config []byte
	layer  v1.Layer
}

var _ partial.CompressedImageCore = (*referrerImage)(nil)

func newReferrerImage(subject v1.Descriptor, b *Bundle) (*referrerImage, error) {
	layer := static.NewLayer(b.JSON, BundleMediaType)
	ld, err := partial.Descriptor(layer)
	if err != nil {
		return nil, err
	}
	ch, csize, err := v1.SHA256(bytes.NewReader(emptyJSON))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  BundleMediaType,
		Config: v1.Descriptor{
			MediaType: emptyJSONMediaType, ArtifactType: BundleMediaType, Digest: ch, Size: csize,
		},
		Layers: []v1.Descriptor{{MediaType: BundleMediaType, Digest: ld.Digest, Size: ld.Size}},
		Subject: &v1.Descriptor{
			MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size,
		},
		Annotations: map[string]string{
			annotationCreated:             b.Created,
			AnnotationBundleContent:       "dsse-envelope",
			AnnotationBundlePredicateType: b.PredicateType,
			AnnotationStatementDigest:     b.StatementDigest.String(),
			AnnotationSigner:              b.Signer,
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding referrer manifest: %w", err)
	}
	return &referrerImage{raw: raw, config: emptyJSON, layer: layer}, nil
}

func (r *referrerImage) RawConfigFile() ([]byte, error)      { return r.config, nil }
func (r *referrerImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (r *referrerImage) RawManifest() ([]byte, error)        { return r.raw, nil }

// LayerByDigest implements partial.CompressedImageCore.
func (r *referrerImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, err := r.layer.Digest(); err == nil && d == h {
		return r.layer, nil
	}
	if ch, _, err := v1.SHA256(bytes.NewReader(r.config)); err == nil && ch == h {
		return static.NewLayer(r.config, emptyJSONMediaType), nil
	}
	return nil, fmt.Errorf("referrer has no blob %s", h)
}

func (r *referrerImage) image() (v1.Image, error) { return partial.CompressedToImage(r) }

// writeBundlesRemote stores each bundle of s as a referrer of s.Digest in
// repo, skipping bundles the same signer already stored over the same
// statement. The new referrers are written side by side. A registry with
// the referrers API lists them itself; for one without it, slipway adds
// them to the "sha256-<hex>" referrers tag in one write, keeping every
// entry other tools put there (go-containerregistry would read and
// rewrite that tag once per referrer, in sequence). writeEmpty writes
// the referrers' empty config blob (once per WriteRemote).
//
// With aw, each referrer is its bundle blob (uploaded without asking: it
// was just made), the empty config (written already) and its manifest:
// three requests.
func writeBundlesRemote(ctx context.Context, repo name.Repository, s Subject, rec *Record, writeEmpty func() error, aw *artifactWriter, ropts []remote.Option) error {
	if len(s.Bundles) == 0 {
		return nil
	}
	// The record confirms the referrers tag of a registry without the
	// API with one HEAD (with the API, the listing is one request).
	d := repo.Digest(s.Digest.String())
	fallback := referrersTag(d)
	want := make([]string, 0, len(s.Bundles))
	for _, b := range s.Bundles {
		if b.Signer != "" {
			want = append(want, heldDigest(b.Signer, b.StatementDigest))
		}
	}
	recordable := len(want) == len(s.Bundles)
	if recordable && rec.confirmed(fallback, want, ropts) {
		return nil
	}
	listed, err := listReferrers(d, fallback, ropts)
	if err != nil {
		return err
	}
	var todo []v1.Image
	var kinds []string // bundleKind of each of todo, for errors
	for _, b := range s.Bundles {
		if slices.ContainsFunc(listed.descs, func(desc v1.Descriptor) bool { return sameBundle(desc, b) }) {
			continue
		}
		ri, err := newReferrerImage(v1.Descriptor{MediaType: s.MediaType, Digest: s.Digest, Size: s.Size}, b)
		if err != nil {
			return err
		}
		img, err := ri.image()
		if err != nil {
			return err
		}
		todo = append(todo, img)
		kinds = append(kinds, bundleKind(b.PredicateType))
	}
	if len(todo) > 0 {
		if err := writeEmpty(); err != nil {
			return fmt.Errorf("writing the referrers' config of %s: %w", s.Digest, err)
		}
	}
	wopts := noTagFallback(ropts)
	var g errgroup.Group
	for i, img := range todo {
		g.Go(func() error {
			mh, err := img.Digest()
			if err != nil {
				return err
			}
			ref := repo.Digest(mh.String())
			if aw != nil {
				err = aw.writeImage(ctx, ref, img, func(h v1.Hash) blobState {
					if h == emptyDigest {
						return blobThere
					}
					return blobFresh
				})
			} else if err = remote.Write(ref, img, wopts...); err != nil && !listed.api {
				// Without the API, go-containerregistry fails after the
				// manifest PUT (its tag fallback is off: the tag is
				// written below). The referrer is there if HEAD finds it.
				if _, herr := remote.Head(ref, ropts...); herr == nil {
					err = nil
				}
			}
			if err != nil {
				return fmt.Errorf("writing %s bundle of %s: %w", kinds[i], s.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if listed.api {
		return nil
	}
	tagDigest := listed.tagDigest
	if len(todo) > 0 {
		if tagDigest, err = addToReferrersTag(fallback, listed.tag, todo, ropts); err != nil {
			return err
		}
	}
	if recordable && tagDigest != (v1.Hash{}) {
		if err := rec.remember(fallback, tagDigest, want); err != nil {
			return err
		}
	}
	return nil
}

// noTagFallback is ropts without go-containerregistry's referrers tag
// fallback. A reused puller or pusher keeps the options it was made with,
// so they are not reused here (the transport, and so the session, is).
func noTagFallback(ropts []remote.Option) []remote.Option {
	return append(slices.Clone(ropts), remote.WithReferrersTagFallback(false),
		remote.Reuse((*remote.Puller)(nil)), remote.Reuse((*remote.Pusher)(nil)))
}

// referrerListing is what listReferrers found.
type referrerListing struct {
	api       bool              // the registry has the referrers API
	descs     []v1.Descriptor   // the bundle referrers listed
	tag       *v1.IndexManifest // the referrers tag's index (no API; nil when absent)
	tagDigest v1.Hash           // its digest
}

// listReferrers lists the referrers of d through the referrers API, or,
// when the registry lacks it, from the referrers tag.
func listReferrers(d name.Digest, fallback name.Tag, ropts []remote.Option) (*referrerListing, error) {
	idx, apiErr := remote.Referrers(d, noTagFallback(ropts)...)
	if apiErr == nil {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("listing referrers of %s: %w", d.DigestStr(), err)
		}
		l := &referrerListing{api: true}
		for _, desc := range im.Manifests {
			if desc, ok := bundleReferrer(desc); ok {
				l.descs = append(l.descs, desc)
			}
		}
		return l, nil
	}
	// No API (or the listing failed: then reading the tag fails too, or
	// the referrers written below are also put in a tag the registry
	// ignores).
	l := &referrerListing{}
	desc, err := remote.Get(fallback, ropts...)
	var te *transport.Error
	switch {
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("listing referrers of %s: %w", d.DigestStr(), errors.Join(apiErr, err))
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("reading the referrers tag %s: %w", fallback, err)
	}
	l.tag, l.tagDigest = im, desc.Digest
	for _, desc := range im.Manifests {
		if desc, ok := bundleReferrer(desc); ok {
			l.descs = append(l.descs, desc)
		}
	}
	return l, nil
}

// addToReferrersTag writes the referrers tag with imgs added to current
// (nil: none yet), entries sorted by digest as go-containerregistry and
// the OCI distribution spec's tag schema keep them, and returns its digest.
func addToReferrersTag(tag name.Tag, current *v1.IndexManifest, imgs []v1.Image, ropts []remote.Option) (v1.Hash, error) {
	im := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	if current != nil {
		im = *current
		im.Manifests = slices.Clone(current.Manifests)
	}
	for _, img := range imgs {
		m, err := img.Manifest()
		if err != nil {
			return v1.Hash{}, err
		}
		desc, err := partial.Descriptor(img)
		if err != nil {
			return v1.Hash{}, err
		}
		if !slices.ContainsFunc(im.Manifests, func(e v1.Descriptor) bool { return e.Digest == desc.Digest }) {
			im.Manifests = append(im.Manifests, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest,
				ArtifactType: m.ArtifactType, Annotations: m.Annotations})
		}
	}
	slices.SortFunc(im.Manifests, func(a, b v1.Descriptor) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	raw, err := json.Marshal(im)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(tag, rawIndex(raw), ropts...); err != nil {
		return v1.Hash{}, fmt.Errorf("writing the referrers tag %s: %w", tag, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

// rawIndex is an index manifest to Put as it is.
type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// listBundleReferrers lists the bundle referrers of d: through the
// referrers API, else from the referrers tag (none when the registry has
// neither).
func listBundleReferrers(d name.Digest, ropts []remote.Option) ([]v1.Descriptor, error) {
	l, err := listReferrers(d, referrersTag(d), ropts)
	if err != nil {
		return nil, err
	}
	return l.descs, nil
}

// referrersTag is the tag the OCI distribution spec's tag schema lists
// d's referrers at, for registries without the referrers API.
func referrersTag(d name.Digest) name.Tag {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1))
}

// bundleReferrer reports whether a referrers listing's entry is a
// Sigstore bundle, with its artifactType set to the bundle's: some
// registries give the config's media type as the artifactType
// (go-containerregistry's does), not the manifest's, and the bundle
// annotation tells those apart.
func bundleReferrer(desc v1.Descriptor) (v1.Descriptor, bool) {
	if desc.ArtifactType == emptyJSONMediaType && desc.Annotations[AnnotationBundleContent] != "" {
		desc.ArtifactType = BundleMediaType
	}
	return desc, desc.ArtifactType == BundleMediaType
}

// sameBundle reports whether a referrer descriptor claims to hold b's
// statement signed by b's signer.
func sameBundle(desc v1.Descriptor, b *Bundle) bool {
	return desc.ArtifactType == BundleMediaType &&
		desc.Annotations[AnnotationStatementDigest] == b.StatementDigest.String() &&
		desc.Annotations[AnnotationSigner] == b.Signer && b.Signer != ""
}

// bundleKind names a bundle's predicate for messages.
func bundleKind(predicateType string) string {
	if predicateType == SignPredicateType {
		return "signature"
	}
	if k := KindOf(predicateType); k != "" {
		return k + " attestation"
	}
	return predicateType
}
