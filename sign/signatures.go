package sign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	cempty "github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	sdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
)

// Signatures holds what one Sign call produced: per subject digest, the
// cosign signatures and attestations to publish beside the image.
type Signatures struct {
	repo     name.Repository
	key      *PublicKey
	subjects []Subject
}

// Subject is one signed manifest and what is attached to it.
type Subject struct {
	// Digest is the manifest's digest.
	Digest v1.Hash
	// MediaType is the manifest's media type.
	MediaType types.MediaType
	// Platform is the child manifest's platform; nil for the index.
	Platform *v1.Platform
	// Signatures go to the "sha256-<hex>.sig" tag.
	Signatures []oci.Signature
	// Attestations go to the "sha256-<hex>.att" tag.
	Attestations []oci.Signature
}

// Repository is the repository named in the signed payloads.
func (s *Signatures) Repository() name.Repository { return s.repo }

// PublicKey is the public half of the signing key.
func (s *Signatures) PublicKey() *PublicKey { return s.key }

// Digest is the digest of the signed index (the first subject).
func (s *Signatures) Digest() v1.Hash {
	if len(s.subjects) == 0 {
		return v1.Hash{}
	}
	return s.subjects[0].Digest
}

// Subjects returns the signed manifests, the index first, then its children
// in index order.
func (s *Signatures) Subjects() []Subject {
	out := make([]Subject, len(s.subjects))
	for i, sub := range s.subjects {
		sub.Signatures = slices.Clone(sub.Signatures)
		sub.Attestations = slices.Clone(sub.Attestations)
		out[i] = sub
	}
	return out
}

// WriteRemote writes the signatures and attestations into repo, at the tags
// cosign reads ("sha256-<hex>.sig" and ".att"), merging with what is there.
// It is idempotent: a signature that the same key already made over the same
// payload is not added again, and an attestation replaces any earlier one of
// the same predicate type made by the same key (others' attestations stay).
// The images the signatures refer to must be written first. opts are passed
// to go-containerregistry unchanged (include authentication there).
func WriteRemote(ctx context.Context, repo name.Repository, sigs *Signatures, opts ...remote.Option) error {
	if sigs == nil || sigs.key == nil {
		return errors.New("writing signatures: nothing to write")
	}
	ropts := append(slices.Clone(opts), remote.WithContext(ctx))
	oopts := []ociremote.Option{ociremote.WithRemoteOptions(ropts...)}
	dd := cremote.NewDupeDetector(sigs.key.verifier)
	for _, s := range sigs.subjects {
		d := repo.Digest(s.Digest.String())
		if len(s.Signatures) > 0 {
			se := ociremote.SignedUnknown(d, oopts...)
			var err error
			for _, sig := range s.Signatures {
				if se, err = mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(dd)); err != nil {
					return fmt.Errorf("attaching signature to %s: %w", d, err)
				}
			}
			if err := ociremote.WriteSignatures(repo, se, oopts...); err != nil {
				return fmt.Errorf("writing signatures of %s: %w", d, err)
			}
		}
		if len(s.Attestations) > 0 {
			se := ociremote.SignedUnknown(d, oopts...)
			current, err := se.Attestations()
			if err != nil {
				return fmt.Errorf("reading attestations of %s: %w", d, err)
			}
			existing, err := current.Get()
			if err != nil {
				return fmt.Errorf("reading attestations of %s: %w", d, err)
			}
			added := 0
			for _, att := range s.Attestations {
				if sameStatementSigned(ctx, existing, att, sigs.key.verifier) {
					// Already attested by this key, word for word: leave it,
					// so an unchanged rerun writes nothing.
					continue
				}
				added++
				pt, err := attestationPredicateType(att)
				if err != nil {
					return fmt.Errorf("attaching attestation to %s: %w", d, err)
				}
				ro := &replaceOwn{ctx: ctx, predicateType: pt, verifier: sigs.key.verifier}
				if se, err = mutate.AttachAttestationToEntity(se, att, mutate.WithReplaceOp(ro)); err != nil {
					return fmt.Errorf("attaching attestation to %s: %w", d, err)
				}
			}
			if added == 0 {
				continue
			}
			if err := ociremote.WriteAttestations(repo, se, oopts...); err != nil {
				return fmt.Errorf("writing attestations of %s: %w", d, err)
			}
		}
	}
	return nil
}

// sameStatementSigned reports whether existing holds an attestation, signed
// by verifier's key, of exactly the statement att carries.
func sameStatementSigned(ctx context.Context, existing []oci.Signature, att oci.Signature, verifier signature.Verifier) bool {
	want, err := statementBytes(att)
	if err != nil {
		return false
	}
	ro := &replaceOwn{ctx: ctx, verifier: verifier}
	for _, e := range existing {
		got, err := statementBytes(e)
		if err != nil || !bytes.Equal(got, want) {
			continue
		}
		pt, err := attestationPredicateType(e)
		if err != nil {
			continue
		}
		ro.predicateType = pt
		if ro.ours(e) {
			return true
		}
	}
	return false
}

// statementBytes is the in-toto statement inside a DSSE attestation.
func statementBytes(att oci.Signature) ([]byte, error) {
	p, err := att.Payload()
	if err != nil {
		return nil, err
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(p, &env); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(env.Payload)
}

// attestationPredicateType reads the predicate type from a DSSE attestation's
// statement (not from the unsigned layer annotation).
func attestationPredicateType(att oci.Signature) (string, error) {
	p, err := att.Payload()
	if err != nil {
		return "", err
	}
	st, err := decodeEnvelopeStatement(p)
	if err != nil {
		return "", err
	}
	return st.PredicateType, nil
}

// replaceOwn is a mutate.ReplaceOp: it drops existing attestations of one
// predicate type that verify with the signer's key, then appends the new one.
// Unlike cosign's own ReplaceOp, attestations by other keys are kept.
type replaceOwn struct {
	ctx           context.Context
	predicateType string
	verifier      signature.Verifier
}

var _ mutate.ReplaceOp = (*replaceOwn)(nil)

// Replace implements mutate.ReplaceOp.
func (r *replaceOwn) Replace(base oci.Signatures, o oci.Signature) (oci.Signatures, error) {
	existing, err := base.Get()
	if err != nil {
		return nil, err
	}
	keep := make([]oci.Signature, 0, len(existing)+1)
	for _, s := range existing {
		if r.ours(s) {
			continue
		}
		keep = append(keep, s)
	}
	return &signatureList{Signatures: base, sigs: append(keep, o)}, nil
}

// ours reports whether s is an attestation of r.predicateType signed by r's key.
func (r *replaceOwn) ours(s oci.Signature) bool {
	p, err := s.Payload()
	if err != nil {
		return false
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(p, &env); err != nil {
		return false
	}
	ev, err := ssldsse.NewEnvelopeVerifier(&sdsse.VerifierAdapter{SignatureVerifier: r.verifier})
	if err != nil {
		return false
	}
	if _, err := ev.Verify(r.ctx, &env); err != nil {
		return false
	}
	st, err := decodeEnvelopeStatement(p)
	return err == nil && st.PredicateType == r.predicateType
}

// signatureList is an oci.Signatures whose Get returns a fixed list.
type signatureList struct {
	oci.Signatures
	sigs []oci.Signature
}

// Get implements oci.Signatures.
func (l *signatureList) Get() ([]oci.Signature, error) { return l.sigs, nil }

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
	// annotationRefName is the OCI ref name: the cosign tag it belongs at.
	annotationRefName = "org.opencontainers.image.ref.name"

	kindSignatures   = "signatures"
	kindAttestations = "attestations"
)

// maxLayoutLayerBytes bounds one signature or attestation layer read back
// from a layout.
const maxLayoutLayerBytes = 16 << 20

// WriteLayout adds the signatures and attestations to the OCI image layout
// at path (creating it if needed) as one image per subject and kind, each
// annotated with AnnotationKind, AnnotationSubject and its cosign tag as
// "org.opencontainers.image.ref.name". Writing again replaces them.
func WriteLayout(path string, sigs *Signatures) error {
	if sigs == nil || sigs.key == nil {
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
				AnnotationKind:       part.kind,
				AnnotationSubject:    s.Digest.String(),
				AnnotationRepository: sigs.repo.Name(),
				AnnotationPublicKey:  string(sigs.key.pem),
				AnnotationIndex:      sigs.Digest().String(),
				annotationRefName:    fmt.Sprintf("%s-%s.%s", s.Digest.Algorithm, s.Digest.Hex, part.suffix),
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
	bySubject := map[v1.Hash]int{}
	for _, desc := range im.Manifests {
		kind := desc.Annotations[AnnotationKind]
		if kind != kindSignatures && kind != kindAttestations {
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
		key, err := ParsePublicKey([]byte(desc.Annotations[AnnotationPublicKey]), "layout "+path)
		if err != nil {
			return nil, err
		}
		if out.key == nil {
			out.key, out.repo, indexDigest = key, repo, desc.Annotations[AnnotationIndex]
		} else if out.key.id != key.id || out.repo.Name() != repo.Name() || indexDigest != desc.Annotations[AnnotationIndex] {
			return nil, fmt.Errorf("layout %s: signatures of more than one index, key or repository", path)
		}
		img, err := lp.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("layout %s: reading %s of %s: %w", path, kind, subj, err)
		}
		list, err := layoutSignatures(img)
		if err != nil {
			return nil, fmt.Errorf("layout %s: reading %s of %s: %w", path, kind, subj, err)
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
		if kind == kindSignatures {
			out.subjects[i].Signatures = append(out.subjects[i].Signatures, list...)
		} else {
			out.subjects[i].Attestations = append(out.subjects[i].Attestations, list...)
		}
	}
	if out.key == nil {
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
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
		rc.Close()
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != desc.Size || desc.Digest.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != desc.Digest.Hex {
			return nil, fmt.Errorf("layer %s: content does not match its descriptor", desc.Digest)
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
