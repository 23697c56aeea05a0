package stage

import (
	"context"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/sign"
)

// Signatures adapts *sign.Signatures to pipeline.Signatures.
type Signatures struct {
	sigs   *sign.Signatures
	ropts  []remote.Option
	record *sign.Record
}

var _ pipeline.Signatures = (*Signatures)(nil)

// Refs implements pipeline.Signatures: the cosign tags written, one .sig
// and one .att per signed digest that has them, then the Sigstore bundle
// referrers by digest.
func (s *Signatures) Refs() []string {
	var refs []string
	repo := s.sigs.Repository()
	for _, sub := range s.sigs.Subjects() {
		if len(sub.Signatures) > 0 {
			refs = append(refs, sign.SignatureTag(repo, sub.Digest).String())
		}
		if len(sub.Attestations) > 0 {
			refs = append(refs, sign.AttestationTag(repo, sub.Digest).String())
		}
	}
	return append(refs, s.sigs.ReferrerRefs()...)
}

// WriteRemote implements pipeline.Signatures.
func (s *Signatures) WriteRemote(ctx context.Context, repo name.Repository, tr http.RoundTripper, opts ...remote.Option) error {
	return sign.WriteRemote(ctx, repo, s.sigs, s.record, tr, append(slices.Clone(s.ropts), opts...)...)
}

// WriteLayout implements pipeline.Signatures.
func (s *Signatures) WriteLayout(dir string) error { return sign.WriteLayout(dir, s.sigs) }

// LayoutSignatures finds the signatures stored in the layout at dir for
// an index digest (nil when there are none), written to a registry with
// ropts and rec (may be nil).
func LayoutSignatures(dir string, rec *sign.Record, ropts ...remote.Option) pipeline.LayoutSignatures {
	return func(_ string, digest v1.Hash) (pipeline.Signatures, error) {
		sigs, err := sign.ReadLayoutFor(dir, digest)
		if err != nil || sigs == nil {
			return nil, err
		}
		return &Signatures{sigs: sigs, ropts: ropts, record: rec}, nil
	}
}
