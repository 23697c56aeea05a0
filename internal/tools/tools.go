//go:build slipway_deps

// Package tools pins modules that slipway's packages use, so that
// `go mod tidy` keeps them while the packages are written, and programs the
// tests build (the OCI distribution-spec conformance suite, run by
// internal/conformance), so that `go mod download` fetches them.
package tools

import (
	_ "github.com/aquasecurity/bolt-fixtures"
	_ "github.com/aquasecurity/trivy-db/pkg/metadata"
	_ "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	_ "github.com/aquasecurity/trivy/pkg/scan/local"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/opencontainers/distribution-spec/conformance"
	_ "github.com/sigstore/cosign/v2/pkg/cosign"
	_ "github.com/sigstore/cosign/v2/pkg/oci/remote"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
)
