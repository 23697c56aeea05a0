// Package sign signs locally assembled image indexes and their attestations
// with cosign-compatible keys, writes them where cosign looks for them, and
// verifies images against a signature and attestation policy.
package sign
