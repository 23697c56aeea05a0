package sign

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// Policy is what Verify requires of an image.
type Policy struct {
	// Keys are the trusted public keys; the same key given twice counts
	// once. At least one key or identity is required.
	Keys []*PublicKey
	// Identities are trusted keyless signers: Fulcio certificates for these
	// OIDC identities, chaining to TrustedRoot. Each counts once.
	Identities []Identity
	// TrustedRoot holds the certificate authorities, timestamp authorities
	// and transparency logs bundles are checked against (required with
	// Identities; with keys, needed only for RequireTlog/RequireTimestamp).
	TrustedRoot root.TrustedMaterial
	// RequireTlog requires every counted bundle to carry a transparency-log
	// entry the trusted root's log verifies. Legacy signatures cannot
	// meet it.
	RequireTlog bool
	// RequireTimestamp requires every counted bundle to carry an RFC 3161
	// timestamp from a timestamp authority of the trusted root. Legacy
	// signatures cannot meet it.
	RequireTimestamp bool
	// Threshold is how many distinct trusted keys and identities must each
	// have made a valid signature over the image digest, in either format
	// (0 means 1).
	Threshold int
	// RequireAttestations lists attestation kinds (vocab.KindSBOM, vocab.KindVuln,
	// vocab.KindProvenance) that must be present, signed by a trusted key, about
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
	// RequireNonRoot denies an image whose config user, on any platform of
	// the index, is empty, root, 0 or 0:… (it would run as root).
	RequireNonRoot bool
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
	ids := map[string]bool{}
	for i := range p.Identities {
		if err := p.Identities[i].validate(); err != nil {
			return nil, fmt.Errorf("policy: identities[%d]: %w", i, err)
		}
		ids[p.Identities[i].String()] = true
	}
	if len(keys) == 0 && len(ids) == 0 {
		return nil, errors.New("policy: at least one trusted public key or keyless identity is required")
	}
	if len(ids) > 0 && p.TrustedRoot == nil {
		return nil, errors.New("policy: keyless identities need a trusted root")
	}
	if (p.RequireTlog || p.RequireTimestamp) && p.TrustedRoot == nil {
		return nil, errors.New("policy: requiring a transparency-log entry or a timestamp needs a trusted root")
	}
	if n := len(keys) + len(ids); p.Threshold < 0 || p.Threshold > n {
		return nil, fmt.Errorf("policy: threshold %d must be between 1 and the %d distinct trusted keys and identities", p.Threshold, n)
	}
	for _, k := range p.RequireAttestations {
		if k != vocab.KindSBOM && k != vocab.KindVuln && k != vocab.KindProvenance {
			return nil, fmt.Errorf("policy: unknown attestation kind %q (want %s, %s or %s)", k, vocab.KindSBOM, vocab.KindVuln, vocab.KindProvenance)
		}
	}
	if _, err := scan.ParseSeverity(string(p.MaxSeverity)); p.MaxSeverity != "" && err != nil {
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
	} else if len(vr.atts[vocab.KindVuln]) > 0 {
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
	var newest *vulnAttestation
	var from verifiedStatement
	for _, a := range vr.atts[vocab.KindVuln] {
		p, err := readVulnPredicate(a.st.Predicate)
		if err != nil {
			return []string{fmt.Sprintf("vuln attestation is unreadable: %v", err)}
		}
		if newest == nil || p.finished.After(newest.finished) {
			newest, from = p, a
		}
	}
	if newest == nil {
		if slices.Contains(pol.RequireAttestations, vocab.KindVuln) {
			return nil // already reported as a missing required attestation
		}
		return []string{"no vuln attestation signed by a trusted key (required by max severity / max scan age)"}
	}
	var reasons []string
	now := vr.opts.now()
	finished := newest.finished
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
		maxSev, _ := scan.ParseSeverity(string(pol.MaxSeverity)) // checked by validate
		if bad := newest.atOrAbove(maxSev.Rank(), now); len(bad) > 0 {
			msg := fmt.Sprintf("%d finding(s) at or above %s: %s", len(bad), pol.MaxSeverity, strings.Join(bad[:min(len(bad), maxListedFindings)], ", "))
			if len(bad) > maxListedFindings {
				msg += fmt.Sprintf(" and %d more", len(bad)-maxListedFindings)
			}
			reasons = append(reasons, msg)
		}
	}
	return reasons
}

// baseReasons checks recorded base image digests against the allow-list.
func (vr *verifier) baseReasons(pol *Policy) []string {
	var found []v1.Hash
	for _, a := range vr.atts[vocab.KindProvenance] {
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
		return []string{"no base image digest recorded (neither in provenance nor in " + build.AnnotationBaseDigest + ")"}
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
