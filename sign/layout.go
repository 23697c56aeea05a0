package sign

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/sigstore/cosign/v2/pkg/oci"
	cempty "github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/slipway-build/slipway/publish"
)

// Layout annotations on the signature images WriteLayout adds to index.json.
const (
	// AnnotationKind is "signatures" or "attestations".
	AnnotationKind = "dev.slipway.sign.kind"
	// AnnotationSubject is the digest the image is attached to.
	AnnotationSubject = "dev.slipway.sign.subject"
	// AnnotationRepository is the repository named in the signed payloads.
	AnnotationRepository = "dev.slipway.sign.repository"
	// AnnotationPublicKey is the signer's public key (PEM), used to detect
	// duplicates when the layout is published.
	AnnotationPublicKey = "dev.slipway.sign.public-key"
	// AnnotationPlatform is the subject's platform, for child manifests.
	AnnotationPlatform = "dev.slipway.sign.platform"
	// AnnotationIndex is the digest of the signed index the subject belongs to.
	AnnotationIndex = "dev.slipway.sign.index"

	kindSignatures   = "signatures"
	kindAttestations = "attestations"
	kindBundle       = "bundle"
)

// maxLayoutLayerBytes bounds one signature or attestation layer read back
// from a layout.
const maxLayoutLayerBytes = 16 << 20

// WriteLayout adds the signatures and attestations to the OCI image layout
// at path (creating it if needed) as one image per subject and kind, each
// annotated with AnnotationKind, AnnotationSubject and its cosign tag as
// "org.opencontainers.image.ref.name". Writing again replaces them.
func WriteLayout(path string, sigs *Signatures) error {
	if sigs == nil {
		return errors.New("writing signatures to layout: nothing to write")
	}
	lp, err := layout.FromPath(path)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(path, "index.json")); !errors.Is(statErr, os.ErrNotExist) {
			return fmt.Errorf("opening layout %s: %w", path, err)
		}
		if lp, err = layout.Write(path, empty.Index); err != nil {
			return fmt.Errorf("creating layout %s: %w", path, err)
		}
	}
	for _, s := range sigs.subjects {
		if err := writeBundlesLayout(lp, sigs, s); err != nil {
			return err
		}
		if sigs.key == nil {
			continue
		}
		for _, part := range []struct {
			kind, suffix string
			list         []oci.Signature
		}{
			{kindSignatures, ociremote.SignatureTagSuffix, s.Signatures},
			{kindAttestations, ociremote.AttestationTagSuffix, s.Attestations},
		} {
			if len(part.list) == 0 {
				continue
			}
			img, err := mutate.AppendSignatures(cempty.Signatures(), false, part.list...)
			if err != nil {
				return fmt.Errorf("assembling %s of %s: %w", part.kind, s.Digest, err)
			}
			ann := map[string]string{
				AnnotationKind:            part.kind,
				AnnotationSubject:         s.Digest.String(),
				AnnotationRepository:      sigs.repo.Name(),
				AnnotationPublicKey:       string(sigs.key.pem),
				AnnotationIndex:           sigs.Digest().String(),
				publish.AnnotationRefName: cosignTag(s.Digest, part.suffix),
			}
			if s.Platform != nil {
				ann[AnnotationPlatform] = s.Platform.String()
			}
			matcher := match.Annotation(AnnotationSubject, s.Digest.String())
			kindMatcher := match.Annotation(AnnotationKind, part.kind)
			both := func(d v1.Descriptor) bool { return matcher(d) && kindMatcher(d) }
			if err := lp.ReplaceImage(img, both, layout.WithAnnotations(ann)); err != nil {
				return fmt.Errorf("writing %s of %s to layout: %w", part.kind, s.Digest, err)
			}
		}
	}
	return nil
}

// writeBundlesLayout adds each bundle of s to the layout as its referrer
// image, replacing one of the same statement and signer.
func writeBundlesLayout(lp layout.Path, sigs *Signatures, s Subject) error {
	for _, b := range s.Bundles {
		ri, err := newReferrerImage(v1.Descriptor{MediaType: s.MediaType, Digest: s.Digest, Size: s.Size}, b)
		if err != nil {
			return err
		}
		img, err := ri.image()
		if err != nil {
			return err
		}
		ann := map[string]string{
			AnnotationKind:            kindBundle,
			AnnotationSubject:         s.Digest.String(),
			AnnotationRepository:      sigs.repo.Name(),
			AnnotationIndex:           sigs.Digest().String(),
			AnnotationStatementDigest: b.StatementDigest.String(),
			AnnotationSigner:          b.Signer,
		}
		if s.Platform != nil {
			ann[AnnotationPlatform] = s.Platform.String()
		}
		same := func(d v1.Descriptor) bool {
			return d.Annotations[AnnotationKind] == kindBundle && d.Annotations[AnnotationSubject] == s.Digest.String() &&
				d.Annotations[AnnotationStatementDigest] == b.StatementDigest.String() && d.Annotations[AnnotationSigner] == b.Signer
		}
		if err := lp.ReplaceImage(img, same, layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("writing %s bundle of %s to layout: %w", bundleKind(b.PredicateType), s.Digest, err)
		}
	}
	return nil
}

// readLayoutBundle reads back one bundle referrer image: the bundle and
// the subject descriptor its manifest names.
func readLayoutBundle(img v1.Image) (*Bundle, *v1.Descriptor, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, err
	}
	if m.Subject == nil || len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType {
		return nil, nil, errors.New("not a bundle referrer (want a subject and one bundle layer)")
	}
	desc := m.Layers[0]
	if desc.Size > maxLayoutLayerBytes {
		return nil, nil, fmt.Errorf("layer %s: %d bytes exceeds %d", desc.Digest, desc.Size, maxLayoutLayerBytes)
	}
	l, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, nil, err
	}
	raw, err := readBlob(l, desc)
	if err != nil {
		return nil, nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	sd, err := v1.NewHash(m.Annotations[AnnotationStatementDigest])
	if err != nil {
		return nil, nil, fmt.Errorf("bad %s annotation: %w", AnnotationStatementDigest, err)
	}
	return &Bundle{
		PredicateType:   m.Annotations[AnnotationBundlePredicateType],
		JSON:            raw,
		StatementDigest: sd,
		Signer:          m.Annotations[AnnotationSigner],
		Created:         m.Annotations[annotationCreated],
	}, m.Subject, nil
}

// ReadLayoutFor reads back the signatures and attestations WriteLayout added
// for the index with digest index, in a layout that may hold those of
// several indexes. It returns nil, nil when the layout has none for it.
func ReadLayoutFor(path string, index v1.Hash) (*Signatures, error) {
	sigs, err := readLayout(path, &index)
	if errors.Is(err, errNoLayoutSignatures) {
		return nil, nil
	}
	return sigs, err
}

var errNoLayoutSignatures = errors.New("no slipway signatures")

func readLayout(path string, only *v1.Hash) (*Signatures, error) {
	lp, err := layout.FromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening layout %s: %w", path, err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading layout %s: %w", path, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading layout %s: %w", path, err)
	}
	out := &Signatures{}
	var indexDigest string
	found := false
	bySubject := map[v1.Hash]int{}
	for _, desc := range im.Manifests {
		kind := desc.Annotations[AnnotationKind]
		if kind != kindSignatures && kind != kindAttestations && kind != kindBundle {
			continue
		}
		if only != nil && desc.Annotations[AnnotationIndex] != only.String() {
			continue
		}
		subj, err := v1.NewHash(desc.Annotations[AnnotationSubject])
		if err != nil {
			return nil, fmt.Errorf("layout %s: %s image %s: bad subject: %w", path, kind, desc.Digest, err)
		}
		repo, err := name.NewRepository(desc.Annotations[AnnotationRepository])
		if err != nil {
			return nil, fmt.Errorf("layout %s: %s image %s: bad repository: %w", path, kind, desc.Digest, err)
		}
		if !found {
			found, out.repo, indexDigest = true, repo, desc.Annotations[AnnotationIndex]
		} else if out.repo.Name() != repo.Name() || indexDigest != desc.Annotations[AnnotationIndex] {
			return nil, fmt.Errorf("layout %s: signatures of more than one index or repository", path)
		}
		img, err := lp.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("layout %s: reading %s of %s: %w", path, kind, subj, err)
		}
		var list []oci.Signature
		var bundle *Bundle
		var bsubj *v1.Descriptor
		if kind == kindBundle {
			if bundle, bsubj, err = readLayoutBundle(img); err != nil {
				return nil, fmt.Errorf("layout %s: reading bundle %s of %s: %w", path, desc.Digest, subj, err)
			}
			if bsubj.Digest != subj {
				return nil, fmt.Errorf("layout %s: bundle %s is annotated for %s but refers to %s", path, desc.Digest, subj, bsubj.Digest)
			}
		} else {
			key, err := ParsePublicKey([]byte(desc.Annotations[AnnotationPublicKey]), "layout "+path)
			if err != nil {
				return nil, err
			}
			if out.key == nil {
				out.key = key
			} else if out.key.id != key.id {
				return nil, fmt.Errorf("layout %s: signatures of more than one key", path)
			}
			if list, err = layoutSignatures(img); err != nil {
				return nil, fmt.Errorf("layout %s: reading %s of %s: %w", path, kind, subj, err)
			}
		}
		i, ok := bySubject[subj]
		if !ok {
			i = len(out.subjects)
			bySubject[subj] = i
			out.subjects = append(out.subjects, Subject{Digest: subj})
			if p := desc.Annotations[AnnotationPlatform]; p != "" {
				if out.subjects[i].Platform, err = v1.ParsePlatform(p); err != nil {
					return nil, fmt.Errorf("layout %s: bad platform %q: %w", path, p, err)
				}
			}
		}
		switch kind {
		case kindBundle:
			out.subjects[i].Bundles = append(out.subjects[i].Bundles, bundle)
			out.subjects[i].MediaType, out.subjects[i].Size = bsubj.MediaType, bsubj.Size
		case kindSignatures:
			out.subjects[i].Signatures = append(out.subjects[i].Signatures, list...)
		default:
			out.subjects[i].Attestations = append(out.subjects[i].Attestations, list...)
		}
	}
	if !found {
		return nil, fmt.Errorf("layout %s: %w", path, errNoLayoutSignatures)
	}
	// The index comes first, as Sign returns it.
	idx := -1
	for i, s := range out.subjects {
		if s.Digest.String() == indexDigest {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("layout %s: no signatures of the index %s", path, indexDigest)
	}
	first := out.subjects[idx]
	out.subjects = append([]Subject{first}, slices.Delete(out.subjects, idx, idx+1)...)
	return out, nil
}

// layoutSignatures rebuilds the signatures stored as the layers of img,
// checking each layer's size and digest against the manifest.
func layoutSignatures(img v1.Image) ([]oci.Signature, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	out := make([]oci.Signature, 0, len(m.Layers))
	for _, desc := range m.Layers {
		if desc.Size > maxLayoutLayerBytes {
			return nil, fmt.Errorf("layer %s: %d bytes exceeds %d", desc.Digest, desc.Size, maxLayoutLayerBytes)
		}
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return nil, err
		}
		b, err := readBlob(l, desc)
		if errors.Is(err, errBlobMismatch) {
			return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		if err != nil {
			return nil, err
		}
		b64 := desc.Annotations[static.SignatureAnnotationKey]
		if b64 != "" {
			if _, err := base64.StdEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("layer %s: bad signature annotation: %w", desc.Digest, err)
			}
		}
		sig, err := static.NewSignature(b, b64,
			static.WithLayerMediaType(desc.MediaType),
			static.WithAnnotations(desc.Annotations))
		if err != nil {
			return nil, err
		}
		out = append(out, sig)
	}
	return out, nil
}
