package sign

import (
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/oci"
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
