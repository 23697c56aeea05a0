package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	sgsign "github.com/sigstore/sigstore-go/pkg/sign"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ita1 "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/slipway-build/slipway/scan"
)

// Signer signs with one private key or keylessly (a Fulcio certificate for
// an OIDC identity). It writes cosign v2's "simple signing" payloads and
// DSSE attestations (FormatLegacy), Sigstore bundles (FormatBundle), or
// both. It contacts only the Sigstore services it was configured with.
type Signer struct {
	key      *PrivateKey    // nil when keyless
	kp       sgsign.Keypair // signs bundles
	signerID string
	format   Format
	services *Services
	opts     *options
	log      *slog.Logger
}

// SignerConfig says how a Signer signs.
type SignerConfig struct {
	// Key is the signing key. Exactly one of Key and Keyless is required.
	Key *PrivateKey
	// Keyless signs with an ephemeral key and a Fulcio certificate for the
	// identity in an OIDC token. Bundles only: cosign v2's legacy keyless
	// format needs Rekor's bundle annotations, which slipway does not write.
	Keyless *Keyless
	// Format is where signatures go (default FormatBoth with a key,
	// FormatBundle keyless).
	Format Format
	// Services are the timestamp authority, transparency log and trusted
	// root used for bundles (nil: none, which is fine with a key).
	Services *Services
}

// NewKeyed returns a Signer that signs with key in FormatBoth, with no
// Sigstore services. Of opts, WithLogger and WithClock apply.
func NewKeyed(key *PrivateKey, opts ...Option) (*Signer, error) {
	return NewSigner(SignerConfig{Key: key}, opts...)
}

// NewSigner returns a Signer. Keyless signing asks for the identity token
// and the certificate on the first Sign, not here.
func NewSigner(cfg SignerConfig, opts ...Option) (*Signer, error) {
	o := makeOptions(opts)
	s := &Signer{key: cfg.Key, format: cfg.Format, services: cfg.Services, opts: o, log: o.log}
	if s.services == nil {
		s.services = &Services{}
	}
	switch {
	case cfg.Key != nil && cfg.Keyless != nil:
		return nil, errors.New("signing: a key and keyless signing are exclusive")
	case cfg.Key != nil:
		if s.format == "" {
			s.format = FormatBoth
		}
		kp, err := newKeypair(cfg.Key.sv)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", cfg.Key, err)
		}
		s.kp, s.signerID = kp, cfg.Key.Public().ID()
	case cfg.Keyless != nil:
		if s.format == "" {
			s.format = FormatBundle
		}
		if s.format != FormatBundle {
			return nil, fmt.Errorf("signing: keyless signing writes Sigstore bundles only (format %q needs a key)", s.format)
		}
		if err := s.services.keylessReady(); err != nil {
			return nil, err
		}
		kp, err := sgsign.NewEphemeralKeypair(nil)
		if err != nil {
			return nil, fmt.Errorf("making ephemeral key: %w", err)
		}
		s.kp = kp
		if err := s.services.setKeyless(cfg.Keyless); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("signing key is required")
	}
	if _, err := ParseFormat(string(s.format)); err != nil {
		return nil, err
	}
	return s, nil
}

// Format is where the signer's signatures go.
func (s *Signer) Format() Format { return s.format }

// SignOption adds to what one Sign call produces.
type SignOption func(*signRequest)

type signRequest struct {
	annotations map[string]string
	sbom        *SBOM
	vuln        *scan.Report
	provenance  *Provenance
	openvex     []byte
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
// and makes the attestations opts ask for. It reads idx and calls the key
// (and, keyless or with services, Fulcio, the timestamp authority and the
// transparency log); it does no registry I/O. Signatures cover the index
// digest and every child manifest digest; attestations are made about the
// index digest only (it pins every platform manifest, and it is the digest
// verifiers are given).
func (s *Signer) Sign(ctx context.Context, idx v1.ImageIndex, repo name.Repository, opts ...SignOption) (*Signatures, error) {
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
	mt, err := idx.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading index media type: %w", err)
	}
	if s.services.keyless != nil {
		id, err := s.services.keyless.start(ctx)
		if err != nil {
			return nil, err
		}
		s.signerID = id
	}
	out := &Signatures{repo: repo, format: s.format}
	if s.key != nil {
		out.key = s.key.Public()
	}
	ann := make(map[string]any, len(req.annotations))
	for k, v := range req.annotations {
		ann[k] = v
	}
	size, err := idx.Size()
	if err != nil {
		return nil, fmt.Errorf("reading index size: %w", err)
	}
	subjects := []Subject{{Digest: h, MediaType: mt, Size: size}}
	for _, d := range im.Manifests {
		subjects = append(subjects, Subject{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Platform: d.Platform})
	}
	seen := map[v1.Hash]bool{}
	for _, sub := range subjects {
		if seen[sub.Digest] {
			continue
		}
		seen[sub.Digest] = true
		if s.format.legacy() {
			sig, err := s.signImage(ctx, repo, sub.Digest, ann)
			if err != nil {
				return nil, fmt.Errorf("signing %s: %w", sub.Digest, err)
			}
			sub.Signatures = []oci.Signature{sig}
		}
		if s.format.bundles() {
			st, err := signStatement(sub.Digest, req.annotations)
			if err != nil {
				return nil, fmt.Errorf("signing %s: %w", sub.Digest, err)
			}
			b, err := s.makeBundle(ctx, SignPredicateType, st)
			if err != nil {
				return nil, fmt.Errorf("signing %s: %w", sub.Digest, err)
			}
			sub.Bundles = append(sub.Bundles, b)
		}
		out.subjects = append(out.subjects, sub)
	}

	stmts, err := s.statements(repo, h, &req)
	if err != nil {
		return nil, err
	}
	for _, st := range stmts {
		if s.format.legacy() {
			att, err := s.attestLegacy(ctx, st)
			if err != nil {
				return nil, err
			}
			out.subjects[0].Attestations = append(out.subjects[0].Attestations, att)
		}
		if s.format.bundles() {
			b, err := s.makeBundle(ctx, st.predicateType, st.body)
			if err != nil {
				return nil, fmt.Errorf("attesting %s: %w", KindOf(st.predicateType), err)
			}
			out.subjects[0].Bundles = append(out.subjects[0].Bundles, b)
		}
	}
	s.log.InfoContext(ctx, "signed image index",
		slog.String("repository", repo.Name()), slog.String("digest", h.String()),
		slog.Int("manifests", len(out.subjects)), slog.Int("attestations", len(stmts)),
		slog.String("format", string(s.format)), slog.String("signer", s.signerID))
	return out, nil
}

// signImage signs the simple-signing payload for repo@h.
func (s *Signer) signImage(ctx context.Context, repo name.Repository, h v1.Hash, ann map[string]any) (oci.Signature, error) {
	p := payload.Cosign{Image: repo.Digest(h.String())}
	if len(ann) > 0 {
		p.Annotations = ann
	}
	body, err := p.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding payload: %w", err)
	}
	raw, err := s.key.sv.SignMessage(bytes.NewReader(body), sigopts.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing payload with %s: %w", s.key, err)
	}
	return static.NewSignature(body, base64.StdEncoding.EncodeToString(raw))
}

// signStatement is the in-toto statement cosign v3 signs for an image: the
// digest as subject (no name), the signed annotations as the subject's
// annotations, predicate type SignPredicateType and an empty predicate.
func signStatement(h v1.Hash, ann map[string]string) ([]byte, error) {
	sub := &ita1.ResourceDescriptor{Digest: map[string]string{h.Algorithm: h.Hex}}
	if len(ann) > 0 {
		m := make(map[string]any, len(ann))
		for k, v := range ann {
			m[k] = v
		}
		st, err := structpb.NewStruct(m)
		if err != nil {
			return nil, fmt.Errorf("encoding annotations: %w", err)
		}
		sub.Annotations = st
	}
	return marshalStatement(&ita1.Statement{
		Type:          ita1.StatementTypeUri,
		Subject:       []*ita1.ResourceDescriptor{sub},
		PredicateType: SignPredicateType,
		Predicate:     &structpb.Struct{},
	})
}

// pendingStatement is one attestation statement to sign.
type pendingStatement struct {
	predicateType string
	body          []byte
}

// statements builds the requested attestation statements about the index
// digest h.
func (s *Signer) statements(repo name.Repository, h v1.Hash, req *signRequest) ([]pendingStatement, error) {
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
	if req.openvex != nil {
		body, err := openVEXPredicate(req.openvex)
		if err != nil {
			return nil, err
		}
		preds = append(preds, pred{PredicateOpenVEX, body})
	}
	var out []pendingStatement
	for _, p := range preds {
		st, err := statement(repo.Name(), h, p.typ, p.body)
		if err != nil {
			return nil, fmt.Errorf("attesting %s: %w", KindOf(p.typ), err)
		}
		out = append(out, pendingStatement{predicateType: p.typ, body: st})
	}
	return out, nil
}

// attestLegacy signs a statement as a DSSE envelope in cosign v2's
// attestation layer.
func (s *Signer) attestLegacy(ctx context.Context, st pendingStatement) (oci.Signature, error) {
	wrapped := dsse.WrapSigner(s.key.sv, intotoPayloadType)
	env, err := wrapped.SignMessage(bytes.NewReader(st.body), sigopts.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing %s attestation with %s: %w", KindOf(st.predicateType), s.key, err)
	}
	att, err := static.NewAttestation(env,
		static.WithLayerMediaType(ctypes.DssePayloadType),
		static.WithAnnotations(map[string]string{predicateTypeAnnotation: st.predicateType}))
	if err != nil {
		return nil, fmt.Errorf("attesting %s: %w", KindOf(st.predicateType), err)
	}
	return att, nil
}

// predicateTypeAnnotation is the layer annotation cosign sets on attestations.
const predicateTypeAnnotation = "predicateType"
