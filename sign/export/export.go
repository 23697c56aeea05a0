// Package export turns slipway's verification policy (the `policy:` block,
// as `slipway verify` enforces it) into admission policies for the
// cluster: a sigstore policy-controller ClusterImagePolicy or a Kyverno
// ClusterPolicy (verifyImages). Each rule maps to what the target really
// evaluates; a rule the target cannot express is an *UnsupportedError
// naming the rule and the target, unless Options.AllowWeaker, which leaves
// it out and reports it in Result.Dropped. An exported policy is never
// silently weaker than `slipway verify`.
package export

import (
	"fmt"
	"time"
)

// Targets.
const (
	TargetClusterImagePolicy = "clusterimagepolicy"
	TargetKyverno            = "kyverno"
)

// Predicate types the attestation rules check (as slipway writes them).
const (
	PredicateSPDX       = "https://spdx.dev/Document"
	PredicateCycloneDX  = "https://cyclonedx.org/bom"
	PredicateVuln       = "https://cosign.sigstore.dev/attestation/vuln/v1"
	PredicateProvenance = "https://slsa.dev/provenance/v1"
	PredicateSign       = "https://sigstore.dev/cosign/sign/v1"
)

// Policy is a validated `policy:` block, read by the same parser as
// `slipway verify` (pipeline.DecodePolicyFile / Config.Policy) and with its
// keys and trusted root loaded.
type Policy struct {
	// Keys are the trusted public keys.
	Keys []Key
	// Identities are the trusted keyless signers.
	Identities []Identity
	// TrustedRoot is the trusted_root.json for identities, logs and
	// timestamps; nil means the public-good instance.
	TrustedRoot []byte
	// RequireTlog and RequireTimestamp demand a log entry / an RFC 3161
	// timestamp on every counted signature.
	RequireTlog, RequireTimestamp bool
	// Threshold is how many distinct keys and identities must have signed
	// (0 means 1).
	Threshold int
	// RequireAttestations are attestation kinds: sbom, vuln, provenance.
	RequireAttestations []string
	// MaxSeverity ("" for none) denies a vuln attestation with an
	// unsuppressed finding at or above it (Trivy's shape:
	// predicate.scanner.result.Results[].Vulnerabilities[].Severity).
	MaxSeverity string
	// MaxScanAge (0 for none) denies a vuln attestation whose
	// metadata.scanFinishedOn is older.
	MaxScanAge time.Duration
	// AllowedBaseDigests, when set, must hold every base digest the
	// provenance attestation records, and one must be recorded.
	AllowedBaseDigests []string
	// RequireNonRoot denies images whose config user, on any platform, is
	// empty, root, 0 or 0:….
	RequireNonRoot bool
}

// Key is a trusted public key.
type Key struct {
	// PEM is the PKIX public key.
	PEM string
	// Ref is where it came from (a file, env://VAR, a KMS URI).
	Ref string
}

// Identity is a keyless signer; regexps are anchored (^…$).
type Identity struct {
	Issuer, Subject, IssuerRegexp, SubjectRegexp string
}

// Options are the export's choices.
type Options struct {
	// Name is the policy's metadata.name (default "slipway").
	Name string
	// Images are the image globs the policy applies to.
	Images []string
	// AllowWeaker leaves out the rules the target cannot express, listing
	// them in Result.Dropped, instead of failing.
	AllowWeaker bool
}

// Result is an exported policy.
type Result struct {
	// YAML is the documents, ready for kubectl apply.
	YAML []byte
	// Dropped lists the rules left out under AllowWeaker, each "rule:
	// why".
	Dropped []string
}

// UnsupportedError is a rule the target cannot express.
type UnsupportedError struct {
	Rule, Target, Why string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("policy.%s cannot be exported to %s: %s (--allow-weaker leaves it out)", e.Rule, e.Target, e.Why)
}

// unsupported fails or, under AllowWeaker, records the dropped rule.
func (o Options) unsupported(r *Result, rule, target, why string) error {
	if !o.AllowWeaker {
		return &UnsupportedError{Rule: rule, Target: target, Why: why}
	}
	r.Dropped = append(r.Dropped, rule+": "+why)
	return nil
}

// threshold is p.Threshold with 0 meaning 1.
func (p Policy) threshold() int { return max(p.Threshold, 1) }
