package trivy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/sbom/core"
	"github.com/aquasecurity/trivy/pkg/types"
	tvex "github.com/aquasecurity/trivy/pkg/vex"

	"github.com/slipway-build/slipway/scan"
)

func vexFile(name string) string { return filepath.Join("testdata", "vex", name) }

// TestVEXSuppressesOnlyTheStatedProduct: a not_affected statement (OpenVEX
// or CSAF) for the vulnerable package's purl suppresses the finding, with
// status and justification, and the gate passes; statements for another
// product or version, or with status affected, suppress nothing.
func TestVEXSuppressesOnlyTheStatedProduct(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	bin := goBinary(t, "vulnapp")
	idx := index(t,
		image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: bin})),
		image(t, arm64, layer(t, file{name: "app/server", mode: 0o755, data: bin})))
	for _, c := range []struct {
		file          string
		suppressed    bool
		status, justi string
	}{
		{"openvex-text.json", true, "not_affected", "vulnerable_code_not_in_execute_path"},
		{"openvex-subcomponent.json", true, "not_affected", "vulnerable_code_not_in_execute_path"},
		{"csaf-text.json", true, "not_affected", "vulnerable_code_not_in_execute_path"},
		{"cyclonedx-text.json", true, "not_affected", "code_not_reachable"},
		{"cyclonedx-other.json", false, "", ""},
		{"openvex-other-product.json", false, "", ""},
		{"openvex-affected.json", false, "", ""},
	} {
		t.Run(c.file, func(t *testing.T) {
			s := newScanner(t, db, WithVEX(vexFile(c.file)))
			r, err := s.Scan(context.Background(), idx)
			if err != nil {
				t.Fatal(err)
			}
			got := findings(r, "CVE-2022-32149")
			if len(got) != 1 {
				t.Fatalf("findings %+v", r.Findings)
			}
			f := got[0]
			gerr := scan.Gate(r, scan.Policy{Ignore: &scan.IgnoreFile{}})
			if !c.suppressed {
				if f.Suppressed != nil {
					t.Fatalf("suppressed by %+v, want not", f.Suppressed)
				}
				var v *scan.PolicyViolation
				if !errors.As(gerr, &v) {
					t.Fatalf("gate = %v, want a violation", gerr)
				}
				return
			}
			want := scan.Suppression{Rule: "vex:" + vexFile(c.file), Statement: c.status + ": " + c.justi,
				Kind: scan.SuppressedByVEX, Status: c.status, Justification: c.justi}
			if f.Suppressed == nil || *f.Suppressed != want {
				t.Fatalf("suppression = %+v, want %+v", f.Suppressed, want)
			}
			// The gate (with an ignore file, which must keep VEX marks) passes.
			if gerr != nil {
				t.Fatalf("gate = %v, want pass", gerr)
			}
			if len(f.Platforms) != 2 {
				t.Errorf("platforms %v", f.Platforms)
			}
		})
	}
}

// TestVEXInvalidFailsClosed: an unreadable or undecodable VEX document is a
// *VEXError naming the file, at New.
func TestVEXInvalidFailsClosed(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	for _, name := range []string{"missing.json", "truncated.json", "not-vex.json", "cyclonedx-plain-ref.json"} {
		_, err := New(WithDBDir(db), WithCacheDir(t.TempDir()), WithVEX(vexFile("openvex-text.json"), vexFile(name)))
		var ve *VEXError
		if !errors.As(err, &ve) || ve.Path != vexFile(name) || ve.Index != 1 {
			t.Errorf("%s: err = %v, want a VEXError naming it", name, err)
		}
	}
}

// TestVEXIdentity: the report cache keys on the VEX documents.
func TestVEXIdentity(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	a := newScanner(t, db, WithVEX(vexFile("openvex-text.json")))
	b := newScanner(t, db, WithVEX(vexFile("csaf-text.json")))
	none := newScanner(t, db)
	if a.ConfigIdentity() == b.ConfigIdentity() || a.ConfigIdentity() == "" || none.ConfigIdentity() != "" {
		t.Errorf("identities %q %q %q", a.ConfigIdentity(), b.ConfigIdentity(), none.ConfigIdentity())
	}
}

// TestVEXEveryPlatform: a finding merged across platforms is suppressed
// only when a statement covers it on every platform: Debian's package URLs
// name the architecture, so a statement about amd64's libc6 leaves the
// arm64 occurrence, and the finding, counting.
func TestVEXEveryPlatform(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	for _, c := range []struct {
		file       string
		suppressed bool
	}{{"openvex-libc6-amd64.json", false}, {"openvex-libc6-both.json", true}} {
		r, err := newScanner(t, db, WithVEX(vexFile(c.file))).Scan(context.Background(), debianIndex(t))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range r.Findings {
			if f.ID != "CVE-2023-4911" || f.PkgName != "libc6" {
				continue
			}
			n++
			if len(f.Platforms) != 2 || (f.Suppressed != nil) != c.suppressed {
				t.Errorf("%s: libc6 %v suppressed %+v, want suppressed=%v", c.file, f.Platforms, f.Suppressed, c.suppressed)
			}
			if c.suppressed && (f.Suppressed.Status != "fixed" || f.Suppressed.Justification != "") {
				t.Errorf("%s: %+v", c.file, f.Suppressed)
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d libc6 findings of CVE-2023-4911, want 1 (merged)", c.file, n)
		}
		for _, f := range r.Findings {
			if f.PkgName == "libc-bin" && f.Suppressed != nil {
				t.Errorf("%s: libc-bin suppressed by a statement about libc6", c.file)
			}
		}
	}
}

// TestVEXMatchesTrivy: the matchers ported from Trivy's pkg/vex (vexmatch.go)
// mark exactly the vulnerabilities Trivy's own pkg/vex.Filter marks, with
// the same status and statement, on the reports of real scans: a Go binary
// on Debian, two platforms, every test document (product purls, a
// subcomponent of the main module, CSAF, CycloneDX VEX, statements that
// must not match).
func TestVEXMatchesTrivy(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	s := newScanner(t, db)
	bin := goBinary(t, "vulnapp")
	idx := index(t,
		image(t, amd64, layer(t, append(debianFiles("amd64", vulnerableDebianPkgs), file{name: "app/server", mode: 0o755, data: bin})...)),
		image(t, arm64, layer(t, append(debianFiles("arm64", vulnerableDebianPkgs), file{name: "app/server", mode: 0o755, data: bin})...)))
	_, imgs, err := indexImages(idx)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	release, err := openDB(db)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	files, err := filepath.Glob(filepath.Join("testdata", "vex", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	marked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := decodeVEXDocument(b, f)
		if err != nil {
			continue // the broken documents; TestVEXInvalidFailsClosed
		}
		_, isCDX := doc.(*cdxVEXDoc)
		before := marked
		for _, pi := range imgs {
			results, osInfo, _, err := s.analyze(ctx, pi, true)
			if err != nil {
				t.Fatal(err)
			}
			mk := func() *types.Report {
				rep := &types.Report{SchemaVersion: 2, ArtifactName: pi.digest, ArtifactType: ftypes.TypeContainerImage,
					Metadata: types.Metadata{OS: &osInfo}}
				for _, r := range results {
					r.Vulnerabilities = slices.Clone(r.Vulnerabilities)
					r.Packages = slices.Clone(r.Packages)
					rep.Results = append(rep.Results, r)
				}
				if isCDX { // Trivy applies CycloneDX VEX to the SBOM its links name
					rep.ArtifactType = ftypes.TypeCycloneDX
					rep.BOM = core.NewBOM(core.Options{})
					rep.BOM.SerialNumber, rep.BOM.Version = "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79", 1
				}
				return rep
			}
			theirs, ours := mk(), mk()
			if err := tvex.Filter(ctx, theirs, tvex.Options{Sources: []tvex.Source{{Type: tvex.TypeFile, FilePath: f}}}); err != nil {
				t.Fatalf("%s: trivy: %v", f, err)
			}
			if err := filterVEX(ours, []vexMatcher{doc}); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for i := range theirs.Results {
				got, want := summarizeVEX(ours.Results[i], isCDX), summarizeVEX(theirs.Results[i], isCDX)
				if !slices.Equal(got, want) {
					t.Errorf("%s, %s, %s:\n got  %q\n want %q (trivy)", f, pi.platform, theirs.Results[i].Target, got, want)
				}
				marked += len(theirs.Results[i].ModifiedFindings)
			}
		}
		t.Logf("%s: trivy marked %d", filepath.Base(f), marked-before)
	}
	if marked == 0 {
		t.Fatal("no document marked anything: the comparison proves nothing")
	}
}

// summarizeVEX lists a result's kept and modified vulnerabilities, sorted.
// CycloneDX VEX findings are compared without their source (Trivy names
// it "CycloneDX VEX", slipway the file).
func summarizeVEX(r types.Result, cdx bool) []string {
	var out []string
	for _, v := range r.Vulnerabilities {
		out = append(out, "kept "+v.VulnerabilityID+" "+v.PkgID)
	}
	for _, m := range r.ModifiedFindings {
		v := m.Finding.(types.DetectedVulnerability)
		src := m.Source
		if cdx {
			src = ""
		}
		out = append(out, fmt.Sprintf("%s %s %s %q %s", m.Status, v.VulnerabilityID, v.PkgID, m.Statement, src))
	}
	slices.Sort(out)
	return out
}

// TestVEXCSAFWithoutCVE: a CSAF vulnerability without a cve (Trivy
// dereferences it) matches nothing instead of crashing the scan.
func TestVEXCSAFWithoutCVE(t *testing.T) {
	b := []byte(`{"document":{"category":"csaf_vex","csaf_version":"2.0"},"vulnerabilities":[{"notes":[{"category":"summary","text":"no cve"}]}]}`)
	d, err := decodeVEXDocument(b, "nocve.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.NotAffected(types.DetectedVulnerability{VulnerabilityID: "CVE-2022-32149"}, &core.Component{}, nil); ok {
		t.Error("a vulnerability without a cve matched")
	}
}
