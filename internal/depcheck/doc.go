// Package depcheck holds the test that keeps slipway's layering honest:
// which packages may depend on viper, cobra, Trivy and cosign.
package depcheck
