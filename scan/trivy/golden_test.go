package trivy

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	tclock "github.com/aquasecurity/trivy/pkg/clock"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/report/predicate"
	"github.com/aquasecurity/trivy/pkg/types"
)

var update = flag.Bool("update", false, "rewrite golden files")

// cosignVulnGolden is a predicate written by Trivy's own cosign-vuln
// writer. sign's tests check that slipway's vuln predicate has its shape
// and that `slipway verify` reads predicates Trivy wrote.
var cosignVulnGolden = filepath.Join("..", "..", "testdata", "trivy", "cosign-vuln.json")

// TestCosignVulnGolden: the golden file is what Trivy v0.74.0's
// `--format cosign-vuln` writer (predicate.NewVulnWriter) writes for a
// report with a HIGH Go module finding and a LOW Debian one.
func TestCosignVulnGolden(t *testing.T) {
	published := time.Date(2022, 10, 14, 15, 15, 0, 0, time.UTC)
	rep := types.Report{
		SchemaVersion: reportSchemaVersion,
		Trivy:         types.TrivyInfo{Version: "0.74.0"},
		CreatedAt:     time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
		ArtifactName:  "registry.example/app:1",
		ArtifactType:  ftypes.TypeContainerImage,
		Metadata:      types.Metadata{OS: &ftypes.OS{Family: "debian", Name: "12.5"}, ImageID: "sha256:" + string(bytes.Repeat([]byte("1"), 64))},
		Results: types.Results{
			{
				Target: "registry.example/app:1 (debian 12.5)", Class: types.ClassOSPkg, Type: ftypes.Debian,
				Vulnerabilities: []types.DetectedVulnerability{{
					VulnerabilityID: "CVE-2011-3374", PkgName: "apt", InstalledVersion: "2.6.1", Status: dbTypes.StatusAffected,
					SeveritySource: "debian", PrimaryURL: "https://avd.aquasec.com/nvd/cve-2011-3374",
					Vulnerability: dbTypes.Vulnerability{Title: "apt: weak key validation", Severity: "LOW",
						VendorSeverity: dbTypes.VendorSeverity{"debian": dbTypes.SeverityLow}},
				}},
			},
			{
				Target: "app/server", Class: types.ClassLangPkg, Type: ftypes.GoBinary,
				Vulnerabilities: []types.DetectedVulnerability{{
					VulnerabilityID: "CVE-2022-32149", PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7", FixedVersion: "0.3.8",
					Status: dbTypes.StatusFixed, SeveritySource: "ghsa", PrimaryURL: "https://avd.aquasec.com/nvd/cve-2022-32149",
					Vulnerability: dbTypes.Vulnerability{Title: "golang.org/x/text/language: ParseAcceptLanguage takes a long time to parse complex tags",
						Severity: "HIGH", VendorSeverity: dbTypes.VendorSeverity{"ghsa": dbTypes.SeverityHigh}, PublishedDate: &published},
				}},
			},
		},
	}
	var buf bytes.Buffer
	ctx := tclock.With(context.Background(), time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC))
	if err := predicate.NewVulnWriter(&buf, "0.74.0").Write(ctx, rep); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("\n")
	if *update {
		if err := os.WriteFile(cosignVulnGolden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(cosignVulnGolden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s is not what Trivy writes (go test -run TestCosignVulnGolden -update rewrites it):\n%s", cosignVulnGolden, buf.Bytes())
	}
}
