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
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"

	"github.com/slipway-build/slipway/scan"
)

// Policy is what Verify requires of an image.
type Policy struct {
	// Keys are the trusted public keys. At least one is required; the same
	// key given twice counts once.
	Keys []*PublicKey
	// Threshold is how many distinct trusted keys must each have made a
	// valid signature over the image digest (0 means 1).
	Threshold int
	// RequireAttestations lists attestation kinds (KindSBOM, KindVuln,
	// KindProvenance) that must be present, signed by a trusted key, about
	// the image digest.
	RequireAttestations []string
	// MaxSeverity, when set, denies an image whose newest vuln attestation
	// lists an unsuppressed finding at or above this severity (HIGH denies
	// HIGH and CRITICAL). It requires a vuln attestation.
	MaxSeverity scan.Severity
	// MaxScanAge, when set, denies an image whose newest vuln attestation
	// finished scanning longer ago than this. It requires a vuln attestation.
	// It is the rollback window: without a transparency log, an older,
	// still validly signed attestation re-tagged over the newest one cannot
	// be detected, only bounded by age. 0 means unbounded.
	MaxScanAge time.Duration
	// AllowedBaseDigests, when set, requires every base image digest the
	// image records (SLSA provenance resolved dependencies named
	// BaseImageDependency, or the org.opencontainers.image.base.digest
	// manifest annotation) to be in this list, and at least one recorded.
	AllowedBaseDigests []v1.Hash
}

// validate checks the policy itself (a usage error, not a denial).
func (p *Policy) validate() ([]*PublicKey, error) {
	var keys []*PublicKey
	seen := map[string]bool{}
	for _, k := range p.Keys {
		if k == nil || seen[k.id] {
			continue
		}
		seen[k.id] = true
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("policy: at least one trusted public key is required")
	}
	if p.Threshold < 0 || p.Threshold > len(keys) {
		return nil, fmt.Errorf("policy: threshold %d must be between 1 and the %d distinct trusted keys", p.Threshold, len(keys))
	}
	for _, k := range p.RequireAttestations {
		if k != KindSBOM && k != KindVuln && k != KindProvenance {
			return nil, fmt.Errorf("policy: unknown attestation kind %q (want %s, %s or %s)", k, KindSBOM, KindVuln, KindProvenance)
		}
	}
	if p.MaxSeverity != "" && severityRank(p.MaxSeverity) < 0 {
		return nil, fmt.Errorf("policy: unknown severity %q", p.MaxSeverity)
	}
	if p.MaxScanAge < 0 {
		return nil, errors.New("policy: max scan age must not be negative")
	}
	return keys, nil
}

// needsAttestations reports whether the policy looks at attestations.
func (p *Policy) needsAttestations() bool {
	return len(p.RequireAttestations) > 0 || p.MaxSeverity != "" || p.MaxScanAge > 0 || len(p.AllowedBaseDigests) > 0
}

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
	// Layer is the layer digest in the signature image.
	Layer string `json:"layer"`
	// KeyID is the ID of the trusted key that verified it, if any.
	KeyID string `json:"keyID,omitempty"`
	// Error says why no trusted key verified it.
	Error string `json:"error,omitempty"`
}

// AttestationResult describes one attestation layer.
type AttestationResult struct {
	Layer string `json:"layer"`
	// PredicateType is read from the signed statement (empty if unverified).
	PredicateType string `json:"predicateType,omitempty"`
	// Kind is sbom, vuln or provenance; empty for other predicate types.
	Kind  string `json:"kind,omitempty"`
	KeyID string `json:"keyID,omitempty"`
	Error string `json:"error,omitempty"`
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

	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	d := ref.Context().Digest(desc.Digest.String())
	h := desc.Digest
	v := &Verdict{Image: d.String(), Digest: h.String(), ref: d, Signatures: []SignatureResult{}, Attestations: []AttestationResult{}}
	log := o.log.With(slog.String("image", v.Image))
	log.DebugContext(ctx, "resolved reference", slog.String("ref", ref.String()))

	vr := &verifier{ctx: ctx, opts: o, ropts: ropts, keys: keys, digest: d, hash: h}
	err = vr.signatures(v)
	if err == nil && pol.needsAttestations() {
		err = vr.attestations(v, &pol, desc)
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
				v.Reasons = append(v.Reasons, fmt.Sprintf("valid signatures from %d of %d trusted keys, threshold is %d", n, len(keys), threshold))
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

// VerifyBase verifies that a base image is signed by at least one of keys
// and returns the verified digest, which the build must then use instead of
// ref. An unsigned or wrongly signed base is a *PolicyError.
func VerifyBase(ctx context.Context, ref name.Reference, keys []*PublicKey, opts ...Option) (name.Digest, error) {
	v, err := Verify(ctx, ref, Policy{Keys: keys, Threshold: 1}, opts...)
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

// fetchedLayer is one layer of a signature or attestation image.
type fetchedLayer struct {
	desc    v1.Descriptor
	payload []byte
}

// fetchLayers reads the image at tag and its layers, bounded. A missing tag
// yields no layers. Registry failures are errors; an image outside the
// bounds is a denial.
func (vr *verifier) fetchLayers(tag name.Tag, what string, mediaType types.MediaType, maxBytes int64) ([]fetchedLayer, error) {
	desc, err := remote.Get(tag, vr.ropts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s %s: %w", what, tag, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, &denial{fmt.Sprintf("%s tag %s holds an index, not a signature image", what, tag.TagStr())}
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, &denial{fmt.Sprintf("%s image %s is unreadable: %v", what, tag.TagStr(), err)}
	}
	if len(m.Layers) > MaxSignatures {
		return nil, &denial{fmt.Sprintf("%s image %s has %d layers, more than %d", what, tag.TagStr(), len(m.Layers), MaxSignatures)}
	}
	out := make([]fetchedLayer, 0, len(m.Layers))
	for _, l := range m.Layers {
		if l.MediaType != mediaType {
			out = append(out, fetchedLayer{desc: l})
			continue
		}
		if l.Size < 0 || l.Size > maxBytes {
			return nil, &denial{fmt.Sprintf("%s layer %s is %d bytes, more than the %d allowed", what, l.Digest, l.Size, maxBytes)}
		}
		b, err := vr.fetchBlob(l, what)
		if err != nil {
			return nil, err
		}
		out = append(out, fetchedLayer{desc: l, payload: b})
	}
	return out, nil
}

// fetchBlob reads one layer, checking its size and digest.
func (vr *verifier) fetchBlob(l v1.Descriptor, what string) ([]byte, error) {
	layer, err := remote.Layer(vr.digest.Context().Digest(l.Digest.String()), vr.ropts...)
	if err != nil {
		return nil, fmt.Errorf("reading %s layer %s: %w", what, l.Digest, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("reading %s layer %s: %w", what, l.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s layer %s: %w", what, l.Digest, err)
	}
	sum := sha256.Sum256(b)
	if int64(len(b)) != l.Size || l.Digest.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != l.Digest.Hex {
		return nil, &denial{fmt.Sprintf("%s layer %s does not match its digest or size", what, l.Digest)}
	}
	return b, nil
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
	vr.sigKeys = map[string]bool{}
	for _, l := range layers {
		res := SignatureResult{Layer: l.desc.Digest.String()}
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
	vr.atts = map[string][]verifiedStatement{}
	for _, l := range layers {
		res := AttestationResult{Layer: l.desc.Digest.String()}
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
	if len(pol.AllowedBaseDigests) > 0 {
		return vr.readBaseAnnotations(desc)
	}
	return nil
}

// annotationBaseDigest is the OCI annotation naming the base image digest.
const annotationBaseDigest = "org.opencontainers.image.base.digest"

// maxChildManifests bounds how many platform manifests are read for base
// annotations.
const maxChildManifests = 64

// readBaseAnnotations collects org.opencontainers.image.base.digest from the
// verified manifest, and for an index from its platform manifests (whose
// digests the index pins).
func (vr *verifier) readBaseAnnotations(desc *remote.Descriptor) error {
	add := func(ann map[string]string, where string) error {
		s, ok := ann[annotationBaseDigest]
		if !ok {
			return nil
		}
		h, err := v1.NewHash(s)
		if err != nil {
			return &denial{fmt.Sprintf("%s has a malformed %s annotation", where, annotationBaseDigest)}
		}
		vr.annotationBases = append(vr.annotationBases, h)
		return nil
	}
	if !desc.MediaType.IsIndex() {
		m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return &denial{fmt.Sprintf("image manifest is unreadable: %v", err)}
		}
		return add(m.Annotations, "image manifest")
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return &denial{fmt.Sprintf("index manifest is unreadable: %v", err)}
	}
	if err := add(im.Annotations, "index"); err != nil {
		return err
	}
	if len(im.Manifests) > maxChildManifests {
		return &denial{fmt.Sprintf("index has %d manifests, more than %d", len(im.Manifests), maxChildManifests)}
	}
	for _, c := range im.Manifests {
		if !c.MediaType.IsImage() {
			continue
		}
		cd, err := remote.Get(vr.digest.Context().Digest(c.Digest.String()), vr.ropts...)
		if err != nil {
			return fmt.Errorf("reading platform manifest %s: %w", c.Digest, err)
		}
		m, err := v1.ParseManifest(bytes.NewReader(cd.Manifest))
		if err != nil {
			return &denial{fmt.Sprintf("platform manifest %s is unreadable: %v", c.Digest, err)}
		}
		if err := add(m.Annotations, "platform manifest "+c.Digest.String()); err != nil {
			return err
		}
	}
	return nil
}

// maxListedFindings bounds how many findings one reason names.
const maxListedFindings = 5

// futureSkew is how far in the future a scan time may be (clock skew).
const futureSkew = 5 * time.Minute

// attestationReasons evaluates the attestation parts of the policy.
func (vr *verifier) attestationReasons(pol *Policy) []string {
	var reasons []string
	for _, k := range pol.RequireAttestations {
		if len(vr.atts[k]) == 0 {
			reasons = append(reasons, fmt.Sprintf("required %s attestation missing (none signed by a trusted key for %s)", k, vr.hash))
		}
	}
	if pol.MaxSeverity != "" || pol.MaxScanAge > 0 {
		reasons = append(reasons, vr.vulnReasons(pol)...)
	} else if len(vr.atts[KindVuln]) > 0 {
		vr.vulnReasons(pol) // only to report the scan in the verdict
	}
	if len(pol.AllowedBaseDigests) > 0 {
		reasons = append(reasons, vr.baseReasons(pol)...)
	}
	return reasons
}

// vulnReasons checks the newest verified vuln attestation and records it
// in vr.scan.
func (vr *verifier) vulnReasons(pol *Policy) []string {
	var newest *VulnPredicate
	var from verifiedStatement
	for _, a := range vr.atts[KindVuln] {
		var p VulnPredicate
		if err := json.Unmarshal(a.st.Predicate, &p); err != nil {
			return []string{fmt.Sprintf("vuln attestation is unreadable: %v", err)}
		}
		if newest == nil || p.Metadata.ScanFinishedOn.After(newest.Metadata.ScanFinishedOn) {
			newest, from = &p, a
		}
	}
	if newest == nil {
		if slices.Contains(pol.RequireAttestations, KindVuln) {
			return nil // already reported as a missing required attestation
		}
		return []string{"no vuln attestation signed by a trusted key (required by max severity / max scan age)"}
	}
	var reasons []string
	now := vr.opts.now()
	finished := newest.Metadata.ScanFinishedOn
	vr.scan = &VulnScan{FinishedOn: finished.UTC(), Age: now.Sub(finished).Round(time.Second).String(), Attestation: from.layer, KeyID: from.keyID}
	if pol.MaxScanAge > 0 {
		vr.scan.MaxAge = pol.MaxScanAge.String()
		switch {
		case finished.IsZero():
			reasons = append(reasons, "vuln attestation has no scan finish time")
		case now.Sub(finished) > pol.MaxScanAge:
			reasons = append(reasons, fmt.Sprintf("vulnerability scan finished %s, %s ago, older than the maximum %s (max scan age, the rollback window): rescan and re-attest the image",
				finished.UTC().Format(time.RFC3339), now.Sub(finished).Round(time.Second), pol.MaxScanAge))
		case finished.Sub(now) > futureSkew:
			reasons = append(reasons, fmt.Sprintf("vulnerability scan finish time %s is in the future", finished.UTC().Format(time.RFC3339)))
		}
	}
	if pol.MaxSeverity != "" {
		if newest.Scanner.Result == nil {
			return append(reasons, "vuln attestation has no scan result")
		}
		limit := severityRank(pol.MaxSeverity)
		var bad []string
		for _, f := range newest.Scanner.Result.Findings {
			r := severityRank(f.Severity)
			if r < 0 {
				r = 0 // an unknown severity string ranks as UNKNOWN
			}
			if r < limit || suppressed(f, now) {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s %s in %s %s", f.Severity, f.ID, f.PkgName, f.InstalledVersion))
		}
		if len(bad) > 0 {
			msg := fmt.Sprintf("%d finding(s) at or above %s: %s", len(bad), pol.MaxSeverity, strings.Join(bad[:min(len(bad), maxListedFindings)], ", "))
			if len(bad) > maxListedFindings {
				msg += fmt.Sprintf(" and %d more", len(bad)-maxListedFindings)
			}
			reasons = append(reasons, msg)
		}
	}
	return reasons
}

// suppressed reports whether an ignore rule still covers f.
func suppressed(f scan.Finding, now time.Time) bool {
	s := f.Suppressed
	return s != nil && (s.ExpiresAt.IsZero() || now.Before(s.ExpiresAt))
}

// baseReasons checks recorded base image digests against the allow-list.
func (vr *verifier) baseReasons(pol *Policy) []string {
	var found []v1.Hash
	for _, a := range vr.atts[KindProvenance] {
		var p struct {
			BuildDefinition struct {
				ResolvedDependencies []struct {
					Name   string            `json:"name"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
		}
		if err := json.Unmarshal(a.st.Predicate, &p); err != nil {
			return []string{fmt.Sprintf("provenance attestation is unreadable: %v", err)}
		}
		for _, d := range p.BuildDefinition.ResolvedDependencies {
			if d.Name != BaseImageDependency {
				continue
			}
			hex, ok := d.Digest["sha256"]
			if !ok {
				return []string{"provenance lists a base image without a sha256 digest"}
			}
			found = append(found, v1.Hash{Algorithm: "sha256", Hex: hex})
		}
	}
	found = append(found, vr.annotationBases...)
	if len(found) == 0 {
		return []string{"no base image digest recorded (neither in provenance nor in " + annotationBaseDigest + ")"}
	}
	var reasons []string
	seen := map[v1.Hash]bool{}
	for _, h := range found {
		if seen[h] {
			continue
		}
		seen[h] = true
		if !slices.Contains(pol.AllowedBaseDigests, h) {
			reasons = append(reasons, fmt.Sprintf("base image %s is not an allowed base digest", h))
		}
	}
	return reasons
}

// intotoStatement is the part of an in-toto statement (v0.1 or v1) slipway
// reads.
type intotoStatement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// decodeEnvelopeStatement decodes the in-toto statement inside a DSSE
// envelope. It does not verify the envelope.
func decodeEnvelopeStatement(envelope []byte) (*intotoStatement, error) {
	var env ssldsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("decoding envelope: %w", err)
	}
	if env.PayloadType != ctypes.IntotoPayloadType {
		return nil, fmt.Errorf("envelope payload type %q is not in-toto", env.PayloadType)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("decoding envelope payload: %w", err)
	}
	var st intotoStatement
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decoding statement: %w", err)
	}
	if st.PredicateType == "" {
		return nil, errors.New("statement has no predicate type")
	}
	return &st, nil
}

// severityRank orders severities, UNKNOWN 0 to CRITICAL 4; -1 if unknown.
func severityRank(s scan.Severity) int {
	switch scan.Severity(strings.ToUpper(string(s))) {
	case scan.SeverityUnknown:
		return 0
	case scan.SeverityLow:
		return 1
	case scan.SeverityMedium:
		return 2
	case scan.SeverityHigh:
		return 3
	case scan.SeverityCritical:
		return 4
	}
	return -1
}

// firstLine shortens an error message for a verdict.
func firstLine(err error) string {
	if err == nil {
		return "no trusted key"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
