package scan

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sampleReport() *Report {
	r := &Report{
		Subject:   "sha256:0123",
		Scanner:   ScannerInfo{Name: "trivy", Version: "v0.74.0"},
		DB:        DBInfo{SchemaVersion: 2, UpdatedAt: t0},
		Platforms: []string{"linux/amd64", "linux/arm64"},
		Findings: []Finding{
			{ID: "CVE-2023-LOW", Severity: SeverityLow, PkgName: "tar", PkgType: "debian",
				PURL: "pkg:deb/debian/tar@1.34?arch=amd64", InstalledVersion: "1.34", Platforms: []string{"linux/arm64", "linux/amd64"}},
			{ID: "GHSA-high", Severity: SeverityHigh, PkgName: "golang.org/x/text", PkgType: "gobinary",
				PkgPath: "app/server", PURL: "pkg:golang/golang.org/x/text@v0.3.7", InstalledVersion: "v0.3.7",
				FixedVersion: "0.3.8", Title: "denial of service in golang.org/x/text/language", Platforms: []string{"linux/amd64"}},
			{ID: "CVE-crit", Severity: SeverityCritical, PkgName: "zlib1g", PkgType: "debian",
				PURL: "pkg:deb/debian/zlib1g@1.2.13?arch=amd64", InstalledVersion: "1:1.2.13.dfsg-1", Platforms: []string{"linux/amd64"}},
			{ID: "CVE-unfixed", Severity: SeverityHigh, PkgName: "libc6", PkgType: "debian", InstalledVersion: "2.36-9", Status: "affected",
				Platforms: []string{"linux/amd64"}},
		},
	}
	r.Sort()
	return r
}

func TestSortAndCounts(t *testing.T) {
	r := sampleReport()
	var ids []string
	for _, f := range r.Findings {
		ids = append(ids, f.ID)
	}
	if diff := cmp.Diff([]string{"CVE-crit", "CVE-unfixed", "GHSA-high", "CVE-2023-LOW"}, ids); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if got := r.Findings[3].Platforms; !cmp.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms not sorted: %v", got)
	}
	r.Findings[0].Suppressed = &Suppression{Rule: "x"}
	want := map[Severity]int{SeverityHigh: 2, SeverityLow: 1}
	if diff := cmp.Diff(want, r.Counts()); diff != "" {
		t.Errorf("Counts (-want +got):\n%s", diff)
	}
}

func TestGate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		wantIDs []string // nil: gate passes
	}{
		{"default severities", Policy{}, []string{"CVE-crit", "CVE-unfixed", "GHSA-high"}},
		{"lowercase severities", Policy{Severities: []Severity{"critical"}}, []string{"CVE-crit"}},
		{"low fails only when asked", Policy{Severities: []Severity{SeverityLow}}, []string{"CVE-2023-LOW"}},
		{"ignore unfixed", Policy{IgnoreUnfixed: true}, []string{"GHSA-high"}},
		{"medium only passes", Policy{Severities: []Severity{SeverityMedium}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleReport()
			err := Gate(r, tc.policy)
			if tc.wantIDs == nil {
				if err != nil {
					t.Fatalf("Gate = %v, want pass", err)
				}
				return
			}
			var v *PolicyViolation
			if !errors.As(err, &v) {
				t.Fatalf("Gate = %v, want *PolicyViolation", err)
			}
			var ids []string
			for _, f := range v.Findings {
				ids = append(ids, f.ID)
			}
			if diff := cmp.Diff(tc.wantIDs, ids); diff != "" {
				t.Errorf("failing findings (-want +got):\n%s", diff)
			}
			total := 0
			for _, n := range v.Counts {
				total += n
			}
			if total != len(tc.wantIDs) {
				t.Errorf("counts %v do not add up to %d", v.Counts, len(tc.wantIDs))
			}
			if len(r.Findings) != 4 {
				t.Errorf("gate dropped findings from the report: %d left", len(r.Findings))
			}
		})
	}
	if err := Gate(sampleReport(), Policy{Severities: []Severity{"SEVERE"}}); err == nil || errors.As(err, new(*PolicyViolation)) {
		t.Errorf("unknown severity: got %v, want a plain error", err)
	}
}

const ignoreYAML = `
vulnerabilities:
  - id: CVE-crit
    statement: not reachable, zlib inflate unused
    expired_at: 2026-04-01
  - id: GHSA-high
    paths: ["app/**"]
    purls: ["pkg:golang/golang.org/x/text"]
  - id: CVE-unfixed
    purls: ["pkg:deb/debian/libc6"]
misconfigurations:
  - id: AVD-DS-0002
`

func TestWriteTable(t *testing.T) {
	r := sampleReport()
	r.Findings[0].Suppressed = &Suppression{Rule: "x"}
	r.Unjudged = []Unjudged{{Reason: UnjudgedNoPackageDB, Platform: "linux/arm64", Detail: "OS debian 12 detected but no package database is visible"}}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"SEVERITY", "PLATFORMS", "(CRITICAL)", "GHSA-high", "golang.org/x/text (app/server)", "v0.3.7", "0.3.8",
		"linux/amd64,linux/arm64", "denial of service", "Total: 3 (CRITICAL: 0, HIGH: 2, MEDIUM: 0, LOW: 1, UNKNOWN: 0), suppressed: 1",
		"Not judged [no-package-db]: linux/arm64: OS debian 12 detected but no package database is visible",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	r := sampleReport()
	r.Findings[1].Suppressed = &Suppression{Rule: "f:CVE-unfixed", Statement: "s", ExpiresAt: t0}
	r.Unjudged = []Unjudged{{Reason: UnjudgedDBFromFuture, Detail: "ahead"}}
	var b bytes.Buffer
	if err := Write(&b, r, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*r, got); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func TestWriteSARIF(t *testing.T) {
	r := sampleReport()
	r.Findings = append(r.Findings, Finding{ID: "GHSA-high", Severity: SeverityHigh, PkgName: "golang.org/x/text",
		PkgType: "gobinary", PkgPath: "usr/bin/other", InstalledVersion: "v0.3.6", Platforms: []string{"linux/arm64"}})
	r.Findings[0].Suppressed = &Suppression{Rule: "ignore.yaml:CVE-crit", Statement: "accepted"}
	var b bytes.Buffer
	if err := WriteSARIF(&b, r); err != nil {
		t.Fatal(err)
	}
	validateSARIF(t, b.Bytes())

	var log struct {
		Runs []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID         string
						Properties map[string]any
					}
				}
			}
			Results []struct {
				RuleID, Level string
				RuleIndex     int
				Locations     []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
					}
				}
				Suppressions []struct{ Kind, Status string }
			}
		}
	}
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if len(run.Tool.Driver.Rules) != 4 || len(run.Results) != 5 {
		t.Fatalf("rules %d results %d, want 4 and 5 (one rule per vulnerability id)", len(run.Tool.Driver.Rules), len(run.Results))
	}
	wantLevel := map[string]string{"CVE-crit": "error", "GHSA-high": "error", "CVE-unfixed": "error", "CVE-2023-LOW": "note"}
	wantSev := map[string]string{"CVE-crit": "9.5", "GHSA-high": "8.0", "CVE-unfixed": "8.0", "CVE-2023-LOW": "2.0"}
	for _, res := range run.Results {
		rule := run.Tool.Driver.Rules[res.RuleIndex]
		if rule.ID != res.RuleID {
			t.Errorf("result %s points at rule %s", res.RuleID, rule.ID)
		}
		if res.Level != wantLevel[res.RuleID] {
			t.Errorf("%s level %s, want %s", res.RuleID, res.Level, wantLevel[res.RuleID])
		}
		if got := rule.Properties["security-severity"]; got != wantSev[res.RuleID] {
			t.Errorf("%s security-severity %v, want %s", res.RuleID, got, wantSev[res.RuleID])
		}
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation.ArtifactLocation.URI == "" {
			t.Errorf("%s: no location", res.RuleID)
		}
	}
	if uri := run.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; uri != "var/lib/dpkg/status" {
		t.Errorf("debian package location = %q", uri)
	}
	if s := run.Results[0].Suppressions; len(s) != 1 || s[0].Status != "accepted" {
		t.Errorf("suppressed finding: suppressions = %+v", s)
	}
	if len(run.Results[2].Suppressions) != 0 {
		t.Errorf("unsuppressed finding carries suppressions")
	}
	if got := SARIFLevel(SeverityMedium); got != "warning" {
		t.Errorf("MEDIUM level = %s", got)
	}
	if got := SARIFLevel(SeverityUnknown); got != "note" {
		t.Errorf("UNKNOWN level = %s", got)
	}
}

func TestWriteSARIFEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSARIF(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	validateSARIF(t, b.Bytes())
	// The validator itself must reject a log without a tool.
	if err := compiledSARIFSchema(t).Validate(mustUnmarshal(t, []byte(`{"version":"2.1.0","runs":[{"results":[]}]}`))); err == nil {
		t.Error("schema accepted a run without tool")
	}
}

func mustUnmarshal(t *testing.T, doc []byte) any {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// validateSARIF checks doc against the OASIS SARIF 2.1.0 JSON schema
// vendored in testdata.
func validateSARIF(t *testing.T, doc []byte) {
	t.Helper()
	if err := compiledSARIFSchema(t).Validate(mustUnmarshal(t, doc)); err != nil {
		t.Fatalf("SARIF does not validate: %v\n%s", err, doc)
	}
}

func compiledSARIFSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json"
	if err := c.AddResource(url, schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func find(t *testing.T, r *Report, id string) *Finding {
	t.Helper()
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i]
		}
	}
	t.Fatalf("no finding %s", id)
	return nil
}

// Cannot judge = cannot pass: every Unjudged fails the gate (not as a
// policy violation) unless its reason is allowed.
func TestGateCannotJudge(t *testing.T) {
	clean := func() *Report {
		return &Report{Findings: []Finding{}, Unjudged: []Unjudged{
			{Reason: UnjudgedUnsupportedOS, Platform: "linux/amd64", Detail: "OS debian 99 is a release the scanner does not know"},
			{Reason: UnjudgedDBFromFuture, Detail: "the vulnerability DB was updated 3h ahead"},
		}}
	}
	err := Gate(clean(), Policy{})
	var cj *CannotJudgeError
	var pv *PolicyViolation
	if !errors.As(err, &cj) || errors.As(err, &pv) || len(cj.Items) != 2 {
		t.Fatalf("Gate = %v, want a *CannotJudgeError with 2 items and no violation", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "cannot judge: linux/amd64: OS debian 99") ||
		!strings.Contains(msg, "unsupported-os, db-from-future to scan.allow_unjudged") {
		t.Errorf("message = %q", msg)
	}
	if err := Gate(clean(), Policy{AllowUnjudged: []string{UnjudgedUnsupportedOS}}); !errors.As(err, &cj) || len(cj.Items) != 1 || cj.Items[0].Reason != UnjudgedDBFromFuture {
		t.Errorf("one allowed: Gate = %v", err)
	}
	if err := Gate(clean(), Policy{AllowUnjudged: []string{UnjudgedUnsupportedOS, UnjudgedDBFromFuture}}); err != nil {
		t.Errorf("all allowed: Gate = %v", err)
	}
	// With findings as well, both are reported and it is not only a
	// policy violation (exit 1, not 3).
	r := sampleReport()
	r.Unjudged = clean().Unjudged
	err = Gate(r, Policy{})
	if !errors.As(err, &cj) || !errors.As(err, &pv) || !strings.HasPrefix(err.Error(), "cannot judge: ") {
		t.Errorf("findings and unjudged: Gate = %v", err)
	}
}
