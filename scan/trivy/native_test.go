package trivy

import (
	"bytes"
	gocmp "cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/report/predicate"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/slipway-build/slipway/scan"
)

// TestTrivyReportDebianTwoPlatforms: the report's TrivyReport is Trivy's
// own types.Report, one Result per platform, holding exactly the findings
// of the report, and it is byte for byte what Trivy's cosign-vuln writer
// puts in scanner.result for the same report.
func TestTrivyReportDebianTwoPlatforms(t *testing.T) {
	s := newScanner(t, fixtureDB(t, now.Add(-time.Hour)))
	idx := debianIndex(t)
	r, err := s.Scan(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	var tr types.Report
	if err := json.Unmarshal(r.TrivyReport, &tr); err != nil {
		t.Fatalf("TrivyReport does not decode as Trivy's types.Report: %v\n%s", err, r.TrivyReport)
	}
	if tr.SchemaVersion != 2 || tr.ArtifactName != r.Subject || tr.ArtifactType != ftypes.TypeContainerImage ||
		tr.Trivy.Version != strings.TrimPrefix(s.version, "v") || !tr.CreatedAt.Equal(r.FinishedAt) {
		t.Errorf("report header = %d %q %q %q %v", tr.SchemaVersion, tr.ArtifactName, tr.ArtifactType, tr.Trivy.Version, tr.CreatedAt)
	}
	if tr.Metadata.OS == nil || tr.Metadata.OS.Family != "debian" || tr.Metadata.OS.Name != "12.5" {
		t.Errorf("Metadata.OS = %+v", tr.Metadata.OS)
	}
	type vuln struct{ target, id, pkg, installed, severity string }
	var got []vuln
	var targets []string
	for _, res := range tr.Results {
		targets = append(targets, res.Target)
		if res.Class != types.ClassOSPkg || res.Type != ftypes.Debian || len(res.Packages) != 0 {
			t.Errorf("result %q: class %q type %q, %d packages", res.Target, res.Class, res.Type, len(res.Packages))
		}
		for _, v := range res.Vulnerabilities {
			got = append(got, vuln{res.Target[:len("linux/amd64")], v.VulnerabilityID, v.PkgName, v.InstalledVersion, v.Severity})
		}
	}
	if len(targets) != 2 || !bytes.HasPrefix([]byte(targets[0]), []byte("linux/amd64: sha256:")) ||
		!bytes.HasPrefix([]byte(targets[1]), []byte("linux/arm64/v8: sha256:")) {
		t.Errorf("targets = %q, want one per platform, prefixed with it", targets)
	}
	var want []vuln
	for _, f := range r.Findings {
		for _, p := range f.Platforms {
			want = append(want, vuln{p[:len("linux/amd64")], f.ID, f.PkgName, f.InstalledVersion, string(f.Severity)})
		}
	}
	order := func(a, b vuln) int {
		return gocmp.Compare(a.target+a.id+a.pkg+a.installed, b.target+b.id+b.pkg+b.installed)
	}
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if len(want) < 6 { // glibc twice (libc-bin, libc6) and apt, on two platforms
		t.Fatalf("findings = %+v", r.Findings)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(vuln{})); diff != "" {
		t.Errorf("Trivy report vulnerabilities vs findings (-findings +trivy):\n%s", diff)
	}

	// Trivy's own cosign-vuln writer, given the same report, writes the
	// same scanner.result.
	var buf bytes.Buffer
	if err := predicate.NewVulnWriter(&buf, tr.Trivy.Version).Write(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	var pred struct {
		Scanner struct {
			URI    string          `json:"uri"`
			Result json.RawMessage `json:"result"`
		} `json:"scanner"`
	}
	if err := json.Unmarshal(buf.Bytes(), &pred); err != nil {
		t.Fatal(err)
	}
	var fromTrivy, ours any
	if err := json.Unmarshal(pred.Scanner.Result, &fromTrivy); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.TrivyReport, &ours); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fromTrivy, ours); diff != "" {
		t.Errorf("scanner.result: Trivy's cosign-vuln writer (-) vs TrivyReport (+):\n%s", diff)
	}
	if pred.Scanner.URI != "pkg:github/aquasecurity/trivy@"+tr.Trivy.Version {
		t.Errorf("Trivy's scanner uri = %q", pred.Scanner.URI)
	}

	// Suppression does not touch the Trivy report: it holds every finding.
	ig, err := scan.ParseIgnoreFile([]byte("vulnerabilities:\n  - id: CVE-2023-4911\n"))
	if err != nil {
		t.Fatal(err)
	}
	before := string(r.TrivyReport)
	if ig.Apply(r, now) == 0 || string(r.TrivyReport) != before {
		t.Error("suppression changed the Trivy report, or suppressed nothing")
	}
}
