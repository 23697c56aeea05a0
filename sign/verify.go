package sign

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
)

// Verdict is the outcome of Verify, serialisable as JSON.
type Verdict struct {
	// Image is the verified image by digest: "registry/repo@sha256:…".
	// Deploy this, not the tag.
	Image string `json:"image"`
	// Digest is the verified digest alone.
	Digest string `json:"digest"`
	// Passed reports whether the policy was met.
	Passed bool `json:"passed"`
	// Reasons lists why the policy was not met.
	Reasons []string `json:"reasons,omitempty"`
	// Signatures lists every signature layer found.
	Signatures []SignatureResult `json:"signatures"`
	// Attestations lists every attestation layer found (read only when the
	// policy looks at attestations).
	Attestations []AttestationResult `json:"attestations"`
	// Scan is the vuln attestation the verdict relied on: the newest one
	// signed by a trusted key. Nil when none was read.
	Scan *VulnScan `json:"scan,omitempty"`

	ref name.Digest
}

// Ref is the verified image as a digest reference.
func (v *Verdict) Ref() name.Digest { return v.ref }

// VulnScan describes the vulnerability scan a verdict relied on. Without a
// transparency log an older, cleaner attestation re-tagged over a newer one
// cannot be detected: MaxAge (the policy's MaxScanAge) is how far back such
// a rollback can reach.
type VulnScan struct {
	// FinishedOn is when the scan finished, as the attestation says.
	FinishedOn time.Time `json:"finishedOn"`
	// Age is how long before the verification the scan finished.
	Age string `json:"age"`
	// MaxAge is the oldest scan the policy accepts; empty when unbounded.
	MaxAge string `json:"maxAge,omitempty"`
	// Attestation is the attestation layer's digest.
	Attestation string `json:"attestation"`
	// KeyID is the trusted key that signed it.
	KeyID string `json:"keyID"`
}

// SignatureResult describes one signature layer.
type SignatureResult struct {
	// Layer is the layer digest in the signature image (legacy), or the
	// referrer manifest's digest (bundle).
	Layer string `json:"layer"`
	// Format is "legacy" or "bundle".
	Format string `json:"format"`
	// KeyID is the ID of the trusted key that verified it, if any.
	KeyID string `json:"keyID,omitempty"`
	// Identity is the trusted keyless identity that verified it, if any.
	Identity string `json:"identity,omitempty"`
	// Error says why no trusted key verified it.
	Error string `json:"error,omitempty"`
}

// AttestationResult describes one attestation layer.
type AttestationResult struct {
	Layer  string `json:"layer"`
	Format string `json:"format"`
	// PredicateType is read from the signed statement (empty if unverified).
	PredicateType string `json:"predicateType,omitempty"`
	// Kind is sbom, vuln or provenance; empty for other predicate types.
	Kind     string `json:"kind,omitempty"`
	KeyID    string `json:"keyID,omitempty"`
	Identity string `json:"identity,omitempty"`
	Error    string `json:"error,omitempty"`
}

// PolicyError is returned when an image does not meet a policy. The CLI
// maps it to exit code 3; any other error from Verify is operational.
type PolicyError struct {
	// Image is the image by digest.
	Image string
	// Reasons lists every unmet requirement.
	Reasons []string
}

// Error implements error.
func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy not met for %s: %s", e.Image, strings.Join(e.Reasons, "; "))
}

// denial aborts verification with a policy outcome (fail closed).
type denial struct{ reason string }

func (d *denial) Error() string { return d.reason }

// Verify resolves ref to a digest once, verifies that digest's signatures
// (and, when the policy needs them, attestations) against pol, and returns
// the verdict. It returns (*Verdict, *PolicyError) when the policy is not
// met, (nil, error) on operational failures (registry unreachable, server
// errors), and (*Verdict, nil) when it passes. It never contacts a
// transparency log, Fulcio or TUF.
func Verify(ctx context.Context, ref name.Reference, pol Policy, opts ...Option) (*Verdict, error) {
	o := makeOptions(opts)
	keys, err := pol.validate()
	if err != nil {
		return nil, err
	}
	threshold := max(pol.Threshold, 1)
	ropts := append(slices.Clone(o.remote), remote.WithContext(ctx))
	// One puller for every read: one authenticated transport per
	// repository instead of a new handshake per request.
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, fmt.Errorf("verifying %s: %w", ref, err)
	}
	ropts = append(ropts, remote.Reuse(puller))

	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	d := ref.Context().Digest(desc.Digest.String())
	h := desc.Digest
	v := &Verdict{Image: d.String(), Digest: h.String(), ref: d, Signatures: []SignatureResult{}, Attestations: []AttestationResult{}}
	log := o.log.With(slog.String("image", v.Image))
	log.DebugContext(ctx, "resolved reference", slog.String("ref", ref.String()))

	vr := &verifier{ctx: ctx, opts: o, ropts: ropts, keys: keys, digest: d, hash: h, policy: &pol,
		sigKeys: map[string]bool{}, atts: map[string][]verifiedStatement{}}
	if err := vr.setAuthorities(); err != nil {
		return nil, err
	}
	if len(keys) > 0 && !pol.RequireTlog && !pol.RequireTimestamp {
		err = vr.signatures(v)
	}
	if err == nil {
		err = vr.bundles(v, pol.needsAttestations())
	}
	if err == nil && pol.needsAttestations() && len(keys) > 0 && !pol.RequireTlog && !pol.RequireTimestamp {
		err = vr.attestations(v, &pol, desc)
	}
	if err == nil && len(pol.AllowedBaseDigests) > 0 {
		err = vr.readBaseAnnotations(desc)
	}
	if err == nil && pol.RequireNonRoot {
		err = vr.nonRoot(v, desc)
	}
	var den *denial
	switch {
	case errors.As(err, &den):
		v.Reasons = append(v.Reasons, den.reason)
	case err != nil:
		return nil, err
	}
	if len(v.Reasons) == 0 {
		if n := vr.signedBy(); n < threshold {
			if n == 0 {
				v.Reasons = append(v.Reasons, vr.noSignatureReason(v))
			} else {
				v.Reasons = append(v.Reasons, fmt.Sprintf("valid signatures from %d of %d trusted keys and identities, threshold is %d", n, len(vr.authorities), threshold))
			}
		}
		v.Reasons = append(v.Reasons, vr.attestationReasons(&pol)...)
		v.Scan = vr.scan
	}
	v.Passed = len(v.Reasons) == 0
	log.InfoContext(ctx, "verified image", slog.Bool("passed", v.Passed),
		slog.Int("signatures", len(v.Signatures)), slog.Int("signed_by", vr.signedBy()),
		slog.Int("attestations", len(v.Attestations)), slog.Any("reasons", v.Reasons))
	if !v.Passed {
		return v, &PolicyError{Image: v.Image, Reasons: slices.Clone(v.Reasons)}
	}
	return v, nil
}

// VerifyBase verifies that a base image is signed (in either format) by at
// least one of pol's keys or identities, and returns the verified digest,
// which the build must then use instead of ref. Only pol's signers, trusted
// root and log/timestamp requirements apply. An unsigned or wrongly signed
// base is a *PolicyError.
func VerifyBase(ctx context.Context, ref name.Reference, pol Policy, opts ...Option) (name.Digest, error) {
	v, err := Verify(ctx, ref, Policy{Keys: pol.Keys, Identities: pol.Identities, TrustedRoot: pol.TrustedRoot,
		RequireTlog: pol.RequireTlog, RequireTimestamp: pol.RequireTimestamp, Threshold: 1}, opts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("verifying base image %s: %w", ref, err)
	}
	return v.Ref(), nil
}

// verifier holds the state of one Verify call.
type verifier struct {
	ctx    context.Context
	opts   *options
	ropts  []remote.Option
	keys   []*PublicKey
	digest name.Digest
	hash   v1.Hash
	policy *Policy
	// authorities are the keys and identities bundles are checked against.
	authorities []authority

	sigKeys map[string]bool
	// atts are the verified attestations by kind.
	atts map[string][]verifiedStatement
	// annotationBases are base digests from manifest annotations.
	annotationBases []v1.Hash
	// scan is the vuln attestation relied on.
	scan *VulnScan
}

type verifiedStatement struct {
	keyID string
	layer string
	st    *intotoStatement
}

func (vr *verifier) signedBy() int { return len(vr.sigKeys) }

func (vr *verifier) noSignatureReason(v *Verdict) string {
	if len(v.Signatures) == 0 {
		return "no signatures found"
	}
	return fmt.Sprintf("none of %d signatures is valid for %s from a trusted key (first: %s)", len(v.Signatures), vr.hash, v.Signatures[0].Error)
}

// signatures reads and checks the image's signature layers.
func (vr *verifier) signatures(v *Verdict) error {
	tag, err := ociremote.SignatureTag(vr.digest)
	if err != nil {
		return fmt.Errorf("computing signature tag: %w", err)
	}
	layers, err := vr.fetchLayers(tag, "signature", ctypes.SimpleSigningMediaType, vr.opts.maxSigBytes)
	if err != nil {
		return err
	}
	for _, l := range layers {
		res := SignatureResult{Layer: l.desc.Digest.String(), Format: string(FormatLegacy)}
		if l.payload == nil {
			res.Error = fmt.Sprintf("unexpected media type %q", l.desc.MediaType)
			v.Signatures = append(v.Signatures, res)
			continue
		}
		sig, err := staticSignature(l)
		if err != nil {
			res.Error = err.Error()
			v.Signatures = append(v.Signatures, res)
			continue
		}
		keyID, err := vr.trustedKey(cosign.SimpleClaimVerifier, func(co *cosign.CheckOpts) error {
			_, err := cosign.VerifyImageSignature(vr.ctx, sig, vr.hash, co)
			return err
		})
		if err != nil {
			res.Error = firstLine(err)
		} else {
			res.KeyID = keyID
			vr.sigKeys[keyID] = true
		}
		v.Signatures = append(v.Signatures, res)
	}
	return nil
}

// trustedKey returns the ID of the first trusted key with which verify
// accepts a layer (offline: no tlog, no SCT), or the first key's error
// when none does.
func (vr *verifier) trustedKey(claim func(oci.Signature, v1.Hash, map[string]interface{}) error, verify func(*cosign.CheckOpts) error) (string, error) {
	firstErr := errors.New("no trusted key")
	for i, k := range vr.keys {
		co := &cosign.CheckOpts{SigVerifier: k.verifier, IgnoreTlog: true, IgnoreSCT: true, ClaimVerifier: claim}
		if err := verify(co); err != nil {
			if i == 0 {
				firstErr = err
			}
			continue
		}
		return k.id, nil
	}
	return "", firstErr
}

// staticSignature rebuilds a cosign signature from a fetched layer.
func staticSignature(l fetchedLayer) (oci.Signature, error) {
	b64 := l.desc.Annotations[static.SignatureAnnotationKey]
	if l.desc.MediaType == ctypes.SimpleSigningMediaType {
		if b64 == "" {
			return nil, errors.New("missing signature annotation")
		}
		if _, err := base64.StdEncoding.DecodeString(b64); err != nil {
			return nil, errors.New("signature annotation is not base64")
		}
	}
	ann := make(map[string]string, len(l.desc.Annotations))
	for k, v := range l.desc.Annotations {
		ann[k] = v
	}
	return static.NewSignature(l.payload, b64, static.WithLayerMediaType(l.desc.MediaType), static.WithAnnotations(ann))
}

// attestations reads and checks the attestation layers and records where
// the image says its base came from.
func (vr *verifier) attestations(v *Verdict, pol *Policy, desc *remote.Descriptor) error {
	tag, err := ociremote.AttestationTag(vr.digest)
	if err != nil {
		return fmt.Errorf("computing attestation tag: %w", err)
	}
	layers, err := vr.fetchLayers(tag, "attestation", ctypes.DssePayloadType, vr.opts.maxAttBytes)
	if err != nil {
		return err
	}
	for _, l := range layers {
		res := AttestationResult{Layer: l.desc.Digest.String(), Format: string(FormatLegacy)}
		if l.payload == nil {
			res.Error = fmt.Sprintf("unexpected media type %q", l.desc.MediaType)
			v.Attestations = append(v.Attestations, res)
			continue
		}
		att, err := staticSignature(l)
		if err != nil {
			res.Error = err.Error()
			v.Attestations = append(v.Attestations, res)
			continue
		}
		keyID, err := vr.trustedKey(cosign.IntotoSubjectClaimVerifier, func(co *cosign.CheckOpts) error {
			_, err := cosign.VerifyBlobAttestation(vr.ctx, att, vr.hash, co)
			return err
		})
		if err != nil {
			res.Error = firstLine(err)
			v.Attestations = append(v.Attestations, res)
			continue
		}
		res.KeyID = keyID
		st, err := decodeEnvelopeStatement(l.payload)
		if err != nil {
			// Signed by a trusted key yet unreadable: fail closed.
			return &denial{fmt.Sprintf("attestation %s is signed but unreadable: %v", l.desc.Digest, err)}
		}
		res.PredicateType = st.PredicateType
		res.Kind = KindOf(st.PredicateType)
		if res.Kind != "" {
			vr.atts[res.Kind] = append(vr.atts[res.Kind], verifiedStatement{keyID: res.KeyID, layer: res.Layer, st: st})
		}
		v.Attestations = append(v.Attestations, res)
	}
	return nil
}

// setAuthorities lists the keys and identities bundles are checked
// against.
func (vr *verifier) setAuthorities() error {
	for _, k := range vr.keys {
		vr.authorities = append(vr.authorities, authority{id: k.id, key: k})
	}
	seen := map[string]bool{}
	for _, id := range vr.policy.Identities {
		if seen[id.String()] {
			continue
		}
		seen[id.String()] = true
		ci, err := id.certificateIdentity()
		if err != nil {
			return fmt.Errorf("policy: identity %s: %w", id, err)
		}
		vr.authorities = append(vr.authorities, authority{id: "identity:" + id.String(), identity: &id, certID: ci})
	}
	return nil
}

// firstLine shortens an error message for a verdict.
func firstLine(err error) string {
	if err == nil {
		return "no trusted key"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
