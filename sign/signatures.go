package sign

import (
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// Signatures holds what one Sign call produced: per subject digest, the
// cosign signatures and attestations to publish beside the image.
type Signatures struct {
	repo     name.Repository
	key      *PublicKey // nil when keyless
	format   Format
	subjects []Subject
}

// Subject is one signed manifest and what is attached to it.
type Subject struct {
	// Digest is the manifest's digest.
	Digest v1.Hash
	// MediaType is the manifest's media type.
	MediaType types.MediaType
	// Size is the manifest's size in bytes (a referrer's subject names it).
	Size int64
	// Platform is the child manifest's platform; nil for the index.
	Platform *v1.Platform
	// Signatures go to the "sha256-<hex>.sig" tag.
	Signatures []oci.Signature
	// Attestations go to the "sha256-<hex>.att" tag.
	Attestations []oci.Signature
	// Bundles are Sigstore bundles (signatures and attestations), each
	// stored as an OCI 1.1 referrer of Digest.
	Bundles []*Bundle
}

// Repository is the repository named in the signed payloads.
func (s *Signatures) Repository() name.Repository { return s.repo }

// PublicKey is the public half of the signing key; nil when keyless.
func (s *Signatures) PublicKey() *PublicKey { return s.key }

// Format is where the signatures go.
func (s *Signatures) Format() Format { return s.format }

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
		sub.Bundles = slices.Clone(sub.Bundles)
		out[i] = sub
	}
	return out
}

// SignatureTag is the tag cosign keeps the signatures of digest h at in
// repo: "sha256-<hex>.sig". (Verification asks cosign's ociremote, which
// also honours COSIGN_REPOSITORY.)
func SignatureTag(repo name.Repository, h v1.Hash) name.Tag {
	return repo.Tag(cosignTag(h, ociremote.SignatureTagSuffix))
}

// AttestationTag is the tag cosign keeps the attestations of digest h at
// in repo: "sha256-<hex>.att".
func AttestationTag(repo name.Repository, h v1.Hash) name.Tag {
	return repo.Tag(cosignTag(h, ociremote.AttestationTagSuffix))
}

// cosignTag is cosign's tag for suffix (sig, att) of digest h.
func cosignTag(h v1.Hash, suffix string) string {
	return h.Algorithm + "-" + h.Hex + "." + suffix
}

// ReferrerRefs are the bundle referrers, by digest ("repo@sha256:…"), as
// they are (or will be) stored beside each subject.
func (s *Signatures) ReferrerRefs() []string {
	var out []string
	for _, sub := range s.subjects {
		for _, b := range sub.Bundles {
			ri, err := newReferrerImage(v1.Descriptor{MediaType: sub.MediaType, Digest: sub.Digest, Size: sub.Size}, b)
			if err != nil {
				continue
			}
			img, err := ri.image()
			if err != nil {
				continue
			}
			if h, err := img.Digest(); err == nil {
				out = append(out, s.repo.Digest(h.String()).String())
			}
		}
	}
	return out
}
