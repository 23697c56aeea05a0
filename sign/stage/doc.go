// Package stage is the pipeline's signing stage: it implements
// pipeline.Signer on top of package sign, adding what a run needs around
// the signatures themselves — the attestations the configuration asks
// for (vulnerability report, SBOM, SLSA provenance), the SBOM cache that
// keeps an unchanged image's attestation unchanged, the repository named
// in signed payloads, and the adapter that writes the result to a
// registry or an OCI layout.
//
// Provenance describes the binaries slipway built, read from their own
// build info (as ko reads `go version -m`), not from the go command on
// PATH.
package stage
