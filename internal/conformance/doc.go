// Package conformance runs the OCI distribution-spec conformance suite
// against the docker-registry the tests use, to record what that fixture
// enforces; it qualifies the test fixture, not slipway.
package conformance
