package sign

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-build/slipway/scan"
)

// trivyReportOf is a Trivy JSON report (the shape scan/trivy writes: one
// Result per platform, the Target prefixed with it) holding findings; a
// finding without platforms is in every one of platforms.
func trivyReportOf(t testing.TB, subject string, platforms []string, findings []scan.Finding) json.RawMessage {
	t.Helper()
	type vuln struct {
		VulnerabilityID  string
		PkgName          string
		InstalledVersion string
		FixedVersion     string `json:",omitempty"`
		Severity         string
	}
	type result struct {
		Target          string
		Class           string
		Type            string
		Vulnerabilities []vuln `json:",omitempty"`
	}
	results := []result{}
	for _, p := range platforms {
		res := result{Target: p + ": app/server", Class: "lang-pkgs", Type: "gobinary"}
		for _, f := range findings {
			if len(f.Platforms) == 0 || slices.Contains(f.Platforms, p) {
				res.Vulnerabilities = append(res.Vulnerabilities, vuln{f.ID, f.PkgName, f.InstalledVersion, f.FixedVersion, string(f.Severity)})
			}
		}
		results = append(results, res)
	}
	b, err := json.Marshal(map[string]any{"SchemaVersion": 2, "ArtifactName": subject, "ArtifactType": "container_image", "Results": results})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vulnTestReport is a Trivy scan report with findings on two platforms.
func vulnTestReport(t testing.TB, finished time.Time, findings ...scan.Finding) *scan.Report {
	t.Helper()
	subject := "sha256:" + strings.Repeat("ab", 32)
	platforms := []string{"linux/amd64", "linux/arm64"}
	return &scan.Report{
		Subject: subject, Scanner: scan.ScannerInfo{Name: "trivy", Version: "v0.74.0"},
		DB:        scan.DBInfo{SchemaVersion: 2, UpdatedAt: finished.Add(-time.Hour)},
		StartedAt: finished.Add(-time.Minute), FinishedAt: finished, Platforms: platforms,
		Findings: findings, TrivyReport: trivyReportOf(t, subject, platforms, findings),
	}
}

func predicateJSON(t testing.TB, r *scan.Report) []byte {
	t.Helper()
	body, err := vulnPredicate(r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := body.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenCosignVuln is a predicate Trivy's own cosign-vuln writer wrote
// (scan/trivy's TestCosignVulnGolden checks it).
func goldenCosignVuln(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "trivy", "cosign-vuln.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keysOf(t testing.TB, doc map[string]any, path ...string) []string {
	t.Helper()
	for _, p := range path {
		next, ok := doc[p].(map[string]any)
		if !ok {
			t.Fatalf("%s is not an object", strings.Join(path, "."))
		}
		doc = next
	}
	return slices.Sorted(maps.Keys(doc))
}

// TestVulnPredicateShape: slipway's vuln predicate has the keys of the one
// Trivy writes (invocation, scanner{uri,version,db,result}, metadata),
// plus "slipway"; scanner.result is Trivy's report without the suppressed
// findings, which go to slipway.suppressed with their expiry.
func TestVulnPredicateShape(t *testing.T) {
	finished := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	high := scan.Finding{ID: "CVE-2", Severity: scan.SeverityHigh, PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7", Platforms: []string{"linux/amd64", "linux/arm64"}}
	crit := scan.Finding{ID: "CVE-1", Severity: scan.SeverityCritical, PkgName: "stdlib", InstalledVersion: "v1.22.3", Platforms: []string{"linux/amd64"},
		Suppressed: &scan.Suppression{Rule: ".trivyignore.yaml:CVE-1", Statement: "not reachable", ExpiresAt: finished.Add(24 * time.Hour)}}
	var ours, trivy map[string]any
	if err := json.Unmarshal(predicateJSON(t, vulnTestReport(t, finished, crit, high)), &ours); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(goldenCosignVuln(t), &trivy); err != nil {
		t.Fatal(err)
	}
	for _, path := range [][]string{{"invocation"}, {"scanner"}, {"scanner", "db"}, {"metadata"}} {
		if diff := cmp.Diff(keysOf(t, trivy, path...), keysOf(t, ours, path...)); diff != "" {
			t.Errorf("keys of %v (-trivy +slipway):\n%s", path, diff)
		}
	}
	if diff := cmp.Diff(append(keysOf(t, trivy), "slipway"), keysOf(t, ours)); diff != "" {
		t.Errorf("top-level keys (-trivy+slipway +slipway):\n%s", diff)
	}
	var p VulnPredicate
	b, _ := json.Marshal(ours)
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Scanner.URI != "pkg:github/aquasecurity/trivy@0.74.0" || p.Scanner.Version != "0.74.0" || p.Scanner.DB.Version != "v2 2026-06-01T11:00:00Z" ||
		!p.Metadata.ScanFinishedOn.Equal(finished) {
		t.Errorf("scanner %+v metadata %+v", p.Scanner, p.Metadata)
	}
	var result struct {
		SchemaVersion int
		ArtifactName  string
		Results       []struct {
			Target          string
			Vulnerabilities []trivyVuln
		}
	}
	if err := json.Unmarshal(p.Scanner.Result, &result); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range result.Results {
		for _, v := range r.Vulnerabilities {
			listed = append(listed, r.Target+" "+v.VulnerabilityID+" "+v.Severity)
		}
	}
	want := []string{"linux/amd64: app/server CVE-2 HIGH", "linux/arm64: app/server CVE-2 HIGH"}
	if result.SchemaVersion != 2 || !slices.Equal(listed, want) {
		t.Errorf("scanner.result vulnerabilities = %q, want %q (suppressed CVE-1 left out)", listed, want)
	}
	s := p.Slipway
	if s == nil || s.Subject != "sha256:"+strings.Repeat("ab", 32) || len(s.Suppressed) != 1 || len(s.Platforms) != 2 {
		t.Fatalf("slipway = %+v", s)
	}
	sup := s.Suppressed[0]
	var sv trivyVuln
	if err := json.Unmarshal(sup.Vulnerability, &sv); err != nil {
		t.Fatal(err)
	}
	if sup.Target != "linux/amd64: app/server" || sup.Rule != ".trivyignore.yaml:CVE-1" || !sup.ExpiresAt.Equal(finished.Add(24*time.Hour)) ||
		sv != (trivyVuln{"CVE-1", "stdlib", "v1.22.3", "CRITICAL"}) {
		t.Errorf("suppressed = %+v %+v", sup, sv)
	}

	// A clean image: Results is present, and empty.
	if err := json.Unmarshal(predicateJSON(t, vulnTestReport(t, finished)), &ours); err != nil {
		t.Fatal(err)
	}
	res, ok := ours["scanner"].(map[string]any)["result"].(map[string]any)["Results"].([]any)
	if !ok || len(res) != 2 {
		t.Errorf("clean image: Results = %#v, want one (empty) result per platform", res)
	}
	clean := vulnTestReport(t, finished)
	clean.TrivyReport = json.RawMessage(`{"SchemaVersion":2,"ArtifactName":"x"}`) // Trivy omits an empty Results
	if err := json.Unmarshal(predicateJSON(t, clean), &ours); err != nil {
		t.Fatal(err)
	}
	if res, ok := ours["scanner"].(map[string]any)["result"].(map[string]any)["Results"].([]any); !ok || len(res) != 0 {
		t.Errorf("no results: Results = %#v, want []", res)
	}
}

// TestVulnPredicateRefuses: no attestation without Trivy's report, or with
// one that does not say what the findings say.
func TestVulnPredicateRefuses(t *testing.T) {
	now := time.Now()
	f := scan.Finding{ID: "CVE-1", Severity: scan.SeverityHigh, PkgName: "p", InstalledVersion: "1"}
	other := scan.Finding{ID: "CVE-9", Severity: scan.SeverityLow, PkgName: "q", InstalledVersion: "2"}
	noTrivy := vulnTestReport(t, now, f)
	noTrivy.TrivyReport = nil
	otherScanner := vulnTestReport(t, now, f)
	otherScanner.Scanner.Name = "grype"
	missing := vulnTestReport(t, now, f)
	missing.Findings = append(missing.Findings, other)
	extra := vulnTestReport(t, now, f, other)
	extra.Findings = extra.Findings[:1]
	notObject := vulnTestReport(t, now, f)
	notObject.TrivyReport = json.RawMessage(`[]`)
	badVulns := vulnTestReport(t, now, f)
	badVulns.TrivyReport = json.RawMessage(`{"Results":[{"Target":"t","Vulnerabilities":{"VulnerabilityID":"CVE-1"}}]}`)
	for name, r := range map[string]*scan.Report{"no trivy report": noTrivy, "other scanner": otherScanner,
		"finding not in trivy report": missing, "trivy vulnerability not a finding": extra, "not an object": notObject, "vulnerabilities not a list": badVulns} {
		if _, err := vulnPredicate(r); err == nil {
			t.Errorf("%s: vulnPredicate succeeded", name)
		}
	}
}
