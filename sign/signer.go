package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/slipway-build/slipway/scan"
)

// Keyed signs with one private key: cosign "simple signing" payloads for
// image signatures and DSSE envelopes for in-toto attestations. It never
// uploads to a transparency log and never asks Fulcio for a certificate.
type Keyed struct {
	key *PrivateKey
	log *slog.Logger
}

// NewKeyed returns a Keyed that signs with key. Of opts, only WithLogger
// applies.
func NewKeyed(key *PrivateKey, opts ...Option) (*Keyed, error) {
	if key == nil {
		return nil, errors.New("signing key is required")
	}
	o := makeOptions(opts)
	return &Keyed{key: key, log: o.log}, nil
}

// SignOption adds to what one Sign call produces.
type SignOption func(*signRequest)

type signRequest struct {
	annotations map[string]string
	sbom        *SBOM
	vuln        *scan.Report
	provenance  *Provenance
}

// WithAnnotations adds signed annotations (the payload's "optional" map) to
// every image signature. Values are used as given (templating is the
// caller's). Default: none.
func WithAnnotations(a map[string]string) SignOption {
	return func(r *signRequest) { r.annotations = maps.Clone(a) }
}

// WithSBOM attests an SBOM of the index. Default: none.
func WithSBOM(s SBOM) SignOption {
	return func(r *signRequest) { r.sbom = &s }
}

// WithVulnReport attests a vulnerability scan of the index in cosign's vuln
// predicate. The report's Subject, when set, must be the index digest.
// Default: none.
func WithVulnReport(rep *scan.Report) SignOption {
	return func(r *signRequest) { r.vuln = rep }
}

// WithProvenance attests SLSA provenance v1 of the index. Default: none.
func WithProvenance(p Provenance) SignOption {
	return func(r *signRequest) { r.provenance = &p }
}

// Sign signs idx and each of its child manifests for publication in repo,
// and makes the attestations opts ask for. It reads idx and calls the key;
// it does no registry I/O. Signatures cover the index digest and every child
// manifest digest; attestations are made about the index digest only (it
// pins every platform manifest, and it is the digest verifiers are given).
func (k *Keyed) Sign(ctx context.Context, idx v1.ImageIndex, repo name.Repository, opts ...SignOption) (*Signatures, error) {
	var req signRequest
	for _, o := range opts {
		o(&req)
	}
	h, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing index digest: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index manifest: %w", err)
	}
	out := &Signatures{repo: repo, key: k.key.Public()}

	ann := make(map[string]any, len(req.annotations))
	for k, v := range req.annotations {
		ann[k] = v
	}
	mt, err := idx.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading index media type: %w", err)
	}
	subjects := []Subject{{Digest: h, MediaType: mt}}
	for _, d := range im.Manifests {
		subjects = append(subjects, Subject{Digest: d.Digest, MediaType: d.MediaType, Platform: d.Platform})
	}
	seen := map[v1.Hash]bool{}
	for _, s := range subjects {
		if seen[s.Digest] {
			continue
		}
		seen[s.Digest] = true
		sig, err := k.signImage(ctx, repo, s.Digest, ann)
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", s.Digest, err)
		}
		s.Signatures = []oci.Signature{sig}
		out.subjects = append(out.subjects, s)
	}

	atts, err := k.attest(ctx, repo, h, &req)
	if err != nil {
		return nil, err
	}
	out.subjects[0].Attestations = atts
	k.log.InfoContext(ctx, "signed image index",
		slog.String("repository", repo.Name()), slog.String("digest", h.String()),
		slog.Int("manifests", len(out.subjects)), slog.Int("attestations", len(atts)),
		slog.Any("key", k.key))
	return out, nil
}

// signImage signs the simple-signing payload for repo@h.
func (k *Keyed) signImage(ctx context.Context, repo name.Repository, h v1.Hash, ann map[string]any) (oci.Signature, error) {
	p := payload.Cosign{Image: repo.Digest(h.String())}
	if len(ann) > 0 {
		p.Annotations = ann
	}
	body, err := p.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding payload: %w", err)
	}
	raw, err := k.key.sv.SignMessage(bytes.NewReader(body), sigopts.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing payload with %s: %w", k.key, err)
	}
	return static.NewSignature(body, base64.StdEncoding.EncodeToString(raw))
}

// attest makes the requested attestations about the index digest h.
func (k *Keyed) attest(ctx context.Context, repo name.Repository, h v1.Hash, req *signRequest) ([]oci.Signature, error) {
	type pred struct {
		typ  string
		body *structpb.Struct
	}
	var preds []pred
	if req.sbom != nil {
		pt, body, err := sbomPredicate(req.sbom)
		if err != nil {
			return nil, err
		}
		preds = append(preds, pred{pt, body})
	}
	if req.vuln != nil {
		if req.vuln.Subject != "" && req.vuln.Subject != h.String() {
			return nil, fmt.Errorf("vuln: report is about %s, not the signed index %s", req.vuln.Subject, h)
		}
		body, err := vulnPredicate(req.vuln)
		if err != nil {
			return nil, err
		}
		preds = append(preds, pred{PredicateVuln, body})
	}
	if req.provenance != nil {
		body, err := provenancePredicate(req.provenance)
		if err != nil {
			return nil, err
		}
		preds = append(preds, pred{PredicateProvenance, body})
	}
	wrapped := dsse.WrapSigner(k.key.sv, intotoPayloadType)
	var atts []oci.Signature
	for _, p := range preds {
		st, err := statement(repo.Name(), h, p.typ, p.body)
		if err != nil {
			return nil, fmt.Errorf("attesting %s: %w", KindOf(p.typ), err)
		}
		env, err := wrapped.SignMessage(bytes.NewReader(st), sigopts.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("signing %s attestation with %s: %w", KindOf(p.typ), k.key, err)
		}
		att, err := static.NewAttestation(env,
			static.WithLayerMediaType(ctypes.DssePayloadType),
			static.WithAnnotations(map[string]string{predicateTypeAnnotation: p.typ}))
		if err != nil {
			return nil, fmt.Errorf("attesting %s: %w", KindOf(p.typ), err)
		}
		atts = append(atts, att)
	}
	return atts, nil
}

// predicateTypeAnnotation is the layer annotation cosign sets on attestations.
const predicateTypeAnnotation = "predicateType"
