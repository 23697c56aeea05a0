// Package depcheck holds the test that keeps slipway's layering honest: one
// table of which packages may depend on, or import, viper, cobra, pflag,
// Trivy and cosign (ggcr's cmd/crane/depcheck_test.go). It runs `go list`,
// which go test's cache does not track: run it with -count=1 after changing
// imports.
package depcheck
