package pipeline

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestValidateSBOMReportsAndVEX: scan.reports take the SBOM formats,
// scan.vex is a list of paths resolved against the config file, and the
// openvex attestation needs scan.vex.
func TestValidateSBOMReportsAndVEX(t *testing.T) {
	base := "targets:\n  - name: hello\n    main: ./cmd/hello\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"spdx report", "scan: {reports: [{format: spdx-json, output: sbom.spdx.json}, {format: cyclonedx, output: sbom.cdx.json}]}\n" + base, ""},
		{"upper-case report", "scan: {reports: [{format: SPDX-JSON, output: x}]}\n" + base, "scan.reports[0].format"},
		{"spdx-xml report", "scan: {reports: [{format: spdx-xml, output: x}]}\n" + base, "want json, sarif, table, spdx-json or cyclonedx"},
		{"vex", "scan: {vex: [a.openvex.json, b.csaf.json]}\n" + base, ""},
		{"openvex with vex", "scan: {vex: [a.json]}\nsign: {key: k, attestations: [vuln, openvex]}\n" + base, ""},
		{"openvex without vex", "sign: {key: k, attestations: [openvex]}\n" + base, "sign.attestations: the openvex attestation attaches"},
		{"unknown attestation", "sign: {key: k, attestations: [vex]}\n" + base, "openvex"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate("f.yaml")
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a *ConfigError containing %q", err, c.want)
			}
		})
	}

	cfg, err := DecodeStrict("f.yaml", []byte("scan: {vex: [vex/a.json]}\n"+base))
	if err != nil {
		t.Fatal(err)
	}
	file := cfg.InputPaths()
	if err := cfg.Validate("f.yaml"); err != nil {
		t.Fatal(err)
	}
	cfg.ResolvePaths(file, "/cfg", "/work")
	if want := []string{filepath.Join("/cfg", "vex", "a.json")}; !slices.Equal(cfg.Scan.VEX, want) {
		t.Errorf("file value: %v, want %v", cfg.Scan.VEX, want)
	}
	cfg.Scan.VEX = []string{"flag.json"} // as set by --vex or SLIPWAY_SCAN_VEX
	cfg.ResolvePaths(file, "/cfg", "/work")
	if want := []string{filepath.Join("/work", "flag.json")}; !slices.Equal(cfg.Scan.VEX, want) {
		t.Errorf("flag value: %v, want %v", cfg.Scan.VEX, want)
	}
}
