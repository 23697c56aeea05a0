// Package vocab names the attestations slipway makes and checks, and the
// SBOM formats it makes them in: the words that configuration (pipeline),
// signing and verification (sign, sign/stage) and the SBOM maker
// (scan/trivy) share. It imports nothing, so every layer may use it.
package vocab

// Attestation kinds, as named in configuration (sign.attestations,
// policy.require_attestations) and verdicts.
const (
	KindSBOM       = "sbom"
	KindVuln       = "vuln"
	KindProvenance = "provenance"
)

// Kinds are the attestation kinds, in the order messages list them.
func Kinds() []string { return []string{KindSBOM, KindVuln, KindProvenance} }

// SBOM formats, as named in configuration (sign.sbom_format).
const (
	SBOMSPDXJSON  = "spdx-json" // SPDX 2.3 JSON
	SBOMCycloneDX = "cyclonedx" // CycloneDX JSON
)

// SBOMFormats are the SBOM formats; the first is the default.
func SBOMFormats() []string { return []string{SBOMSPDXJSON, SBOMCycloneDX} }

// Signature formats, as named in configuration (sign.format).
const (
	FormatBoth   = "both"   // Sigstore bundle referrers and cosign v2 tags
	FormatBundle = "bundle" // Sigstore bundles as OCI 1.1 referrers
	FormatLegacy = "legacy" // cosign v2's sha256-<hex>.sig/.att tags
)

// Formats are the signature formats.
func Formats() []string { return []string{FormatBoth, FormatBundle, FormatLegacy} }

// CheckIdentity checks a keyless identity as configured: exactly one of
// issuer and issuerRegexp, exactly one of subject and subjectRegexp, and
// each regexp anchored (^…$), since an unanchored one matches any identity
// that merely contains it. It returns the offending field's name
// (issuer, subject, issuer_regexp, subject_regexp) with the message.
func CheckIdentity(issuer, subject, issuerRegexp, subjectRegexp string) (field, msg string) {
	if (issuer == "") == (issuerRegexp == "") {
		return "issuer", "give exactly one of issuer and issuer_regexp"
	}
	if (subject == "") == (subjectRegexp == "") {
		return "subject", "give exactly one of subject and subject_regexp"
	}
	for _, r := range []struct{ name, re string }{{"issuer_regexp", issuerRegexp}, {"subject_regexp", subjectRegexp}} {
		if r.re == "" {
			continue
		}
		n := len(r.re)
		if n < 2 || r.re[0] != '^' || r.re[n-1] != '$' || r.re[n-2] == '\\' {
			return r.name, "regexp " + quote(r.re) + " must be anchored: start with ^ and end with $"
		}
	}
	return "", ""
}

func quote(s string) string { return "\"" + s + "\"" }
