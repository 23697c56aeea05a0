package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestParseFormatSBOM(t *testing.T) {
	for _, s := range []string{"spdx-json", "CycloneDX", " table "} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q) = %v", s, err)
		}
	}
	if f, _ := ParseFormat("spdx-json"); !f.IsSBOM() {
		t.Errorf("spdx-json is not an SBOM format")
	}
	if f, _ := ParseFormat("sarif"); f.IsSBOM() {
		t.Errorf("sarif is an SBOM format")
	}
	_, err := ParseFormat("spdx-xml")
	if err == nil || !strings.Contains(err.Error(), "spdx-json or cyclonedx") {
		t.Errorf("ParseFormat(spdx-xml) = %v, want the formats listed", err)
	}
}

func TestWriteSBOMFormat(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := Write(&buf, r, FormatSPDXJSON); !errors.Is(err, ErrNoSBOM) {
		t.Fatalf("Write without MakeSBOM = %v, want ErrNoSBOM", err)
	}
	var asked Format
	r.MakeSBOM = func(_ context.Context, f Format) ([]byte, error) {
		asked = f
		return []byte(`{"bomFormat":"CycloneDX"}`), nil
	}
	if err := Write(&buf, r, FormatCycloneDX); err != nil || asked != FormatCycloneDX || buf.String() != `{"bomFormat":"CycloneDX"}` {
		t.Fatalf("Write cyclonedx: %v asked %q wrote %q", err, asked, buf.String())
	}
	r.MakeSBOM = func(context.Context, Format) ([]byte, error) { return nil, errors.New("boom") }
	if err := Write(&buf, r, FormatSPDXJSON); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Write with a failing maker = %v", err)
	}
}

func vexSuppressed() *Suppression {
	return &Suppression{Rule: "vex:/cfg/vex.json", Statement: "not_affected: vulnerable_code_not_in_execute_path",
		Kind: SuppressedByVEX, Status: "not_affected", Justification: "vulnerable_code_not_in_execute_path"}
}

// TestVEXSuppressionInGateAndReports: a finding the scanner marked
// suppressed by VEX does not count for the gate, keeps its mark through
// an ignore file (which clears only its own marks), and every report shows
// it suppressed with status and justification.
func TestVEXSuppressionInGateAndReports(t *testing.T) {
	r := sampleReport()
	for i := range r.Findings {
		if r.Findings[i].Severity == SeverityCritical || r.Findings[i].ID == "CVE-unfixed" {
			r.Findings[i].Suppressed = &Suppression{Rule: "stale ignore"} // an ignore mark from an earlier Apply
		}
		if r.Findings[i].ID == "GHSA-high" {
			r.Findings[i].Suppressed = vexSuppressed()
		}
	}
	ig := &IgnoreFile{Path: "ig.yaml", Vulnerabilities: []IgnoreRule{{ID: "CVE-crit", Statement: "accepted"}, {ID: "CVE-unfixed"}}}
	if err := Gate(r, Policy{Ignore: ig}); err != nil {
		t.Fatalf("Gate = %v, want pass (VEX and ignore suppress every HIGH/CRITICAL)", err)
	}
	for _, f := range r.Findings {
		if f.ID == "GHSA-high" && (f.Suppressed == nil || *f.Suppressed != *vexSuppressed()) {
			t.Fatalf("VEX mark lost: %+v", f.Suppressed)
		}
	}
	// Without the VEX mark, the same gate fails on that finding.
	r2 := sampleReport()
	var v *PolicyViolation
	if err := Gate(r2, Policy{Ignore: ig}); !errors.As(err, &v) || len(v.Findings) != 1 || v.Findings[0].ID != "GHSA-high" {
		t.Fatalf("Gate without VEX = %v", err)
	}

	var table bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(HIGH)", "Suppressed GHSA-high (golang.org/x/text v0.3.7): vex not_affected (vulnerable_code_not_in_execute_path) by /cfg/vex.json",
		"Suppressed CVE-crit (zlib1g 1:1.2.13.dfsg-1): ig.yaml:CVE-crit: accepted"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, f := range back.Findings {
		if f.ID == "GHSA-high" && (f.Suppressed == nil || *f.Suppressed != *vexSuppressed()) {
			t.Errorf("json suppression %+v", f.Suppressed)
		}
	}
	var sarif bytes.Buffer
	if err := WriteSARIF(&sarif, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sarif.String(), `"justification": "vex not_affected (vulnerable_code_not_in_execute_path) by /cfg/vex.json"`) {
		t.Errorf("sarif lacks the VEX justification:\n%s", sarif.String())
	}
}

type vexScanner struct {
	countingScanner
	config string
	sboms  int
}

func (v *vexScanner) ConfigIdentity() string { return v.config }

func (v *vexScanner) SBOM(_ context.Context, _ v1.ImageIndex, format string) ([]byte, error) {
	v.sboms++
	return []byte(format), nil
}

// TestCachedScannerConfigAndSBOM: the report cache keys on the scanner's
// configuration (VEX documents), and cached reports can still make SBOMs.
func TestCachedScannerConfigAndSBOM(t *testing.T) {
	inner := &vexScanner{countingScanner: countingScanner{db: "db"}, config: "vex a"}
	s := Cached(inner, t.TempDir())
	idx, _ := random.Index(64, 1, 1)
	ctx := context.Background()
	if _, err := s.Scan(ctx, idx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Scan(ctx, idx)
	if err != nil || !r.Cached || inner.scans != 1 {
		t.Fatalf("same config: cached=%v scans=%d err=%v", r.Cached, inner.scans, err)
	}
	if b, err := r.MakeSBOM(ctx, FormatSPDXJSON); err != nil || string(b) != "spdx-json" || inner.sboms != 1 {
		t.Fatalf("MakeSBOM of a cached report: %q %v", b, err)
	}
	inner.config = "vex b"
	if r, err := s.Scan(ctx, idx); err != nil || r.Cached || inner.scans != 2 {
		t.Fatalf("other VEX documents: cached=%v scans=%d", r.Cached, inner.scans)
	}
}
