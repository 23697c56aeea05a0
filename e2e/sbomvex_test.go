package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// TestSBOMFormatsReadByTrivy: `slipway scan --format spdx-json|cyclonedx
// --output FILE` writes an SBOM of a two-platform image without signing;
// Trivy's CLI reads both offline (`trivy sbom` with the fixture DB), and
// the SPDX document lists the Go module once, with both platforms.
func TestSBOMFormatsReadByTrivy(t *testing.T) {
	trivy := testutil.Peer(t, "trivy")
	dir := t.TempDir()
	db := fixtureDB(t)
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`platforms: [linux/amd64, linux/arm64]
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: cache
`, filepath.Join(repoRoot(), "testdata", "vulnapp"), db))
	if r := slipway(t, dir, nil, "build", "--oci-layout", "out"); r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	// A format the scan cannot write is refused before anything is scanned.
	if r := slipway(t, dir, nil, "scan", "oci:out", "--format", "spdx-xml", "--output", "x"); r.code != 2 || strings.Contains(r.stderr, "CVE-") {
		t.Fatalf("scan --format spdx-xml: %s, want exit 2 before scanning", r)
	}
	for _, c := range []struct{ format, file string }{{"spdx-json", "sbom.spdx.json"}, {"cyclonedx", "sbom.cdx.json"}} {
		// The gate still judges the image (vulnapp has a HIGH finding).
		if r := slipway(t, dir, nil, "scan", "oci:out", "--format", c.format, "--output", c.file); r.code != 3 {
			t.Fatalf("scan --format %s: %s, want exit 3 (the gate)", c.format, r)
		}
		path := filepath.Join(dir, c.file)
		r := mustPeer(t, dir, trivy, nil, "sbom", "--cache-dir", db, "--skip-db-update", "--skip-java-db-update",
			"--offline-scan", "--scanners", "vuln", "--list-all-pkgs", "--format", "json", path)
		var rep struct {
			Results []struct {
				Target   string
				Packages []struct {
					Name, Version string
				}
				Vulnerabilities []struct{ VulnerabilityID, PkgName string }
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("trivy sbom %s output: %v\n%s", c.format, err, r)
		}
		var text, vulns int
		for _, res := range rep.Results {
			for _, p := range res.Packages {
				if p.Name == "golang.org/x/text" {
					text++
				}
			}
			for _, v := range res.Vulnerabilities {
				if v.VulnerabilityID == "CVE-2022-32149" {
					vulns++
				}
			}
		}
		// One package although both platforms hold it; Trivy finds its CVE.
		if text != 1 || vulns != 1 {
			t.Errorf("trivy sbom %s: golang.org/x/text listed %d times, CVE-2022-32149 found %d times; want 1 and 1\n%s", c.format, text, vulns, r.stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Packages []struct {
			Name        string `json:"name"`
			Annotations []struct {
				Comment string `json:"comment"`
			} `json:"annotations"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var comments []string
	for _, p := range doc.Packages {
		if p.Name == "golang.org/x/text" {
			for _, a := range p.Annotations {
				comments = append(comments, a.Comment)
			}
		}
	}
	if !slices.Contains(comments, "Platforms: linux/amd64, linux/arm64/v8") {
		t.Errorf("spdx x/text annotations %q lack the platforms", comments)
	}
}

// TestVEXSuppressesInGateAndDownstream: vulnapp's HIGH CVE-2022-32149 fails
// the gate; with an OpenVEX document stating golang.org/x/text v0.3.7 is
// not affected, the gate passes, the JSON report shows the finding
// suppressed with status and justification, and the document is attached
// (sign.attestations: [openvex]) so that `trivy image --vex oci` on the
// pushed image suppresses the finding too, while plain `trivy image`
// still reports it.
func TestVEXSuppressesInGateAndDownstream(t *testing.T) {
	trivy := testutil.Peer(t, "trivy")
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	key, _ := demoKey(t, dir, "pw")
	vex := filepath.Join(repoRoot(), "testdata", "vex", "vulnapp.openvex.json")
	cfg := func(vexKeys string) string {
		return fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: cache
  reports: [{format: json, output: report.json}, {format: cyclonedx, output: sbom.cdx.json}]
%ssign:
  key: %s
  attestations: [vuln%s]
`, reg.Host, filepath.Join(repoRoot(), "testdata", "vulnapp"), db, vexKeys, key, map[bool]string{true: ", openvex"}[vexKeys != ""])
	}
	env := []string{"COSIGN_PASSWORD=pw"}
	writeFile(t, dir, "slipway.yaml", cfg(""))
	if r := slipway(t, dir, env, "run", "--push"); r.code != 3 || !strings.Contains(r.stderr, "CVE-2022-32149") {
		t.Fatalf("run without VEX: %s, want exit 3 naming CVE-2022-32149", r)
	}
	// A CSAF document cannot be attached as openvex: a config error naming it.
	csaf := filepath.Join(repoRoot(), "scan", "trivy", "testdata", "vex", "csaf-text.json")
	writeFile(t, dir, "slipway.yaml", cfg("  vex: ["+csaf+"]\n"))
	if r := slipway(t, dir, env, "run", "--push"); r.code != 2 || !strings.Contains(r.stderr, "scan.vex[0]") || !strings.Contains(r.stderr, "csaf-text.json") {
		t.Fatalf("run with CSAF and openvex: %s, want exit 2 naming scan.vex[0] and the file", r)
	}
	// An invalid VEX file fails closed, naming it.
	bad := writeFile(t, dir, "bad.json", `{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [`)
	writeFile(t, dir, "slipway.yaml", cfg("  vex: ["+bad+"]\n"))
	if r := slipway(t, dir, env, "run", "--push"); r.code != 2 || !strings.Contains(r.stderr, "bad.json") {
		t.Fatalf("run with a broken VEX file: %s, want exit 2 naming it", r)
	}

	writeFile(t, dir, "slipway.yaml", cfg("  vex: ["+vex+"]\n"))
	r := slipway(t, dir, env, "run", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("run with VEX: %s, want exit 0", r)
	}
	var rep struct {
		Findings []struct {
			ID         string `json:"id"`
			Severity   string `json:"severity"`
			Suppressed *struct {
				Kind, Status, Justification, Rule string
			} `json:"suppressed"`
		} `json:"findings"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range rep.Findings {
		if f.ID != "CVE-2022-32149" {
			continue
		}
		found = true
		if s := f.Suppressed; f.Severity != "HIGH" || s == nil || s.Kind != "vex" || s.Status != "not_affected" ||
			s.Justification != "vulnerable_code_not_in_execute_path" || !strings.HasSuffix(s.Rule, "vulnapp.openvex.json") {
			t.Errorf("CVE-2022-32149 in the report: %s %+v", f.Severity, f.Suppressed)
		}
	}
	if !found {
		t.Fatalf("report lacks CVE-2022-32149 (suppressed findings stay in it):\n%s", b)
	}
	if !strings.Contains(r.stderr, "Suppressed CVE-2022-32149") || !strings.Contains(r.stderr, "vulnerable_code_not_in_execute_path") {
		t.Errorf("the table does not show the suppression:\n%s", r.stderr)
	}
	// scan.reports writes SBOM formats in a run too.
	if b, err := os.ReadFile(filepath.Join(dir, "sbom.cdx.json")); err != nil || !strings.Contains(string(b), `"bomFormat": "CycloneDX"`) ||
		!strings.Contains(string(b), "pkg:golang/golang.org/x/text@v0.3.7") {
		t.Errorf("scan.reports cyclonedx: %v\n%.300s", err, b)
	}
	ref := readResults(t, filepath.Join(dir, "results.json"))["vuln"].Ref

	// Trivy downstream: without VEX it reports the CVE, with --vex oci it
	// finds slipway's OpenVEX attestation and suppresses it.
	trivyVulns := func(extra ...string) []string {
		args := append([]string{"image", "--cache-dir", db, "--skip-db-update", "--skip-java-db-update", "--offline-scan",
			"--scanners", "vuln", "--format", "json", "--quiet"}, extra...)
		r := mustPeer(t, dir, trivy, nil, append(args, ref)...)
		var out struct {
			Results []struct {
				Vulnerabilities []struct{ VulnerabilityID string }
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("trivy image output: %v\n%s", err, r)
		}
		var ids []string
		for _, res := range out.Results {
			for _, v := range res.Vulnerabilities {
				ids = append(ids, v.VulnerabilityID)
			}
		}
		return ids
	}
	if ids := trivyVulns(); !slices.Contains(ids, "CVE-2022-32149") {
		t.Fatalf("trivy image without VEX: %v, want CVE-2022-32149", ids)
	}
	if ids := trivyVulns("--vex", "oci"); slices.Contains(ids, "CVE-2022-32149") {
		t.Fatalf("trivy image --vex oci: %v, want CVE-2022-32149 suppressed by slipway's openvex attestation", ids)
	}
}
