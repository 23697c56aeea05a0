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
