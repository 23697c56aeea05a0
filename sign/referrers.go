package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
// statement. go-containerregistry uses the registry's referrers API, or
// else merges the new entry into the "sha256-<hex>" referrers tag,
// keeping every entry other tools wrote.
func writeBundlesRemote(ctx context.Context, repo name.Repository, s Subject, rec *Record, ropts []remote.Option) (int, error) {
	if len(s.Bundles) == 0 {
		return 0, nil
	}
	// Registries without the referrers API list referrers at this tag;
	// the record confirms it with a HEAD (with the API, the listing below
	// is one request already).
	fallback := repo.Tag(s.Digest.Algorithm + "-" + s.Digest.Hex)
	want := make([]string, 0, len(s.Bundles))
	for _, b := range s.Bundles {
		if b.Signer != "" {
			want = append(want, b.Signer+"/"+b.StatementDigest.String())
		}
	}
	if len(want) == len(s.Bundles) && rec.confirmed(fallback, want, ropts) {
		return 0, nil
	}
	d := repo.Digest(s.Digest.String())
	have, err := listBundleReferrers(d, ropts)
	if err != nil {
		return 0, err
	}
	written := 0
	for _, b := range s.Bundles {
		if slices.ContainsFunc(have, func(desc v1.Descriptor) bool { return sameBundle(desc, b) }) {
			continue
		}
		ri, err := newReferrerImage(v1.Descriptor{MediaType: s.MediaType, Digest: s.Digest, Size: s.Size}, b)
		if err != nil {
			return written, err
		}
		img, err := ri.image()
		if err != nil {
			return written, err
		}
		mh, err := img.Digest()
		if err != nil {
			return written, err
		}
		if err := remote.Write(repo.Digest(mh.String()), img, ropts...); err != nil {
			return written, fmt.Errorf("writing %s bundle of %s: %w", bundleKind(b.PredicateType), s.Digest, err)
		}
		written++
	}
	if rec != nil && len(want) == len(s.Bundles) {
		if desc, err := remote.Head(fallback, ropts...); err == nil {
			if err := rec.remember(fallback, desc.Digest, want); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// listBundleReferrers lists the bundle referrers of d (none when the
// registry has neither the referrers API nor the fallback tag).
func listBundleReferrers(d name.Digest, ropts []remote.Option) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(d, append(slices.Clone(ropts), remote.WithFilter("artifactType", BundleMediaType))...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("listing referrers of %s: %w", d.DigestStr(), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d.DigestStr(), err)
	}
	return im.Manifests, nil
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
