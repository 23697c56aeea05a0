// Package depcheck holds the tests that keep slipway's layering honest: one
// table of which packages may depend on, or import, viper, cobra, pflag,
// Trivy and cosign (ggcr's cmd/crane/depcheck_test.go), and one of what the
// slipway binary, built with the Makefile's tags and cgo setting, must not
// link (plugin, Trivy's image sources and OCI downloader, go-getter and the
// docker CLI beyond the paths allowed). They run `go list`, which go test's
// cache does not track: run them with -count=1 after changing imports.
package depcheck
