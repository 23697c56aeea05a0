package trivy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/google/go-cmp/cmp"

	"github.com/slipway-build/slipway/scan"
)

func findings(r *scan.Report, id string) []scan.Finding {
	var out []scan.Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func TestScanGoModuleTrimpathBinary(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	s := newScanner(t, db)
	ctx := context.Background()

	vuln := index(t, image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: goBinary(t, "vulnapp")})))
	r, err := s.Scan(ctx, vuln)
	if err != nil {
		t.Fatal(err)
	}
	got := findings(r, "CVE-2022-32149")
	if len(got) != 1 {
		t.Fatalf("CVE-2022-32149 findings = %+v; report: %+v", got, r.Findings)
	}
	want := scan.Finding{
		ID: "CVE-2022-32149", Severity: scan.SeverityHigh, PkgName: "golang.org/x/text", PkgType: "gobinary",
		PkgPath: "app/server", PURL: "pkg:golang/golang.org/x/text@v0.3.7", InstalledVersion: "v0.3.7",
		FixedVersion: "0.3.8", Status: "fixed",
		Title:      "golang.org/x/text/language: ParseAcceptLanguage takes a long time to parse complex tags",
		PrimaryURL: "https://avd.aquasec.com/nvd/cve-2022-32149", Platforms: []string{"linux/amd64"},
	}
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("finding (-want +got):\n%s", diff)
	}
	var v *scan.PolicyViolation
	if err := scan.Gate(r, scan.Policy{}); !errors.As(err, &v) || v.Counts[scan.SeverityHigh] != 1 {
		t.Errorf("Gate = %v, want a violation with 1 HIGH", err)
	}
	if r.Scanner.Name != "trivy" || r.Scanner.Version == "" || !r.DB.UpdatedAt.Equal(now.Add(-time.Hour)) || r.DB.SchemaVersion != 2 {
		t.Errorf("report header: scanner %+v db %+v", r.Scanner, r.DB)
	}
	d, _ := vuln.Digest()
	if r.Subject != d.String() || !slices.Equal(r.Platforms, []string{"linux/amd64"}) {
		t.Errorf("subject %s platforms %v", r.Subject, r.Platforms)
	}

	fixed := index(t, image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: goBinary(t, "vulnapp-fixed")})))
	r, err = s.Scan(ctx, fixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings) != 0 {
		t.Errorf("fixed app: findings %+v", r.Findings)
	}
	if err := scan.Gate(r, scan.Policy{}); err != nil {
		t.Errorf("fixed app: Gate = %v", err)
	}
}

func TestScanStdlib(t *testing.T) {
	s := newScanner(t, fixtureDB(t, now.Add(-time.Hour)))
	bin := withGoVersion(t, goBinary(t, "vulnapp-fixed"), "go1.22.3")
	img := image(t, amd64, layer(t, file{name: "usr/local/bin/server", mode: 0o755, data: bin}))
	r, err := s.ScanImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	got := findings(r, "CVE-2024-24790")
	if len(got) != 1 || got[0].PkgName != "stdlib" || got[0].InstalledVersion != "v1.22.3" ||
		got[0].Severity != scan.SeverityCritical || got[0].FixedVersion != "1.21.11, 1.22.4" || got[0].PkgPath != "usr/local/bin/server" {
		t.Errorf("stdlib finding = %+v", got)
	}
}

func TestScanDebianTwoPlatforms(t *testing.T) {
	s := newScanner(t, fixtureDB(t, now.Add(-time.Hour)))
	r, err := s.Scan(context.Background(), debianIndex(t))
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"linux/amd64", "linux/arm64/v8"}
	if !slices.Equal(r.Platforms, both) {
		t.Errorf("platforms %v", r.Platforms)
	}
	glibc := findings(r, "CVE-2023-4911")
	if len(glibc) != 2 { // libc-bin and libc6, both from glibc
		t.Fatalf("CVE-2023-4911 findings = %+v", glibc)
	}
	for _, f := range glibc {
		if f.Severity != scan.SeverityHigh || f.FixedVersion != "2.36-9+deb12u3" || f.PkgType != "debian" ||
			!slices.Equal(f.Platforms, both) || !strings.HasPrefix(f.PURL, "pkg:deb/debian/") {
			t.Errorf("glibc finding = %+v", f)
		}
	}
	apt := findings(r, "CVE-2011-3374")
	if len(apt) != 1 || apt[0].Severity != scan.SeverityLow || apt[0].FixedVersion != "" || apt[0].Status != "affected" ||
		!slices.Equal(apt[0].Platforms, both) {
		t.Errorf("apt finding = %+v", apt)
	}

	// LOW is reported but does not fail the default gate; HIGH does.
	var v *scan.PolicyViolation
	if err := scan.Gate(r, scan.Policy{}); !errors.As(err, &v) || len(v.Findings) != 2 || v.Counts[scan.SeverityLow] != 0 {
		t.Fatalf("Gate = %v, want the two glibc findings", err)
	}
	var js bytes.Buffer
	if err := scan.WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"CVE-2011-3374"`) || !strings.Contains(js.String(), `"severity": "LOW"`) {
		t.Errorf("JSON report lacks the LOW finding:\n%s", js.String())
	}

	// An ignore entry suppresses the glibc findings until it expires.
	ig, err := scan.ParseIgnoreFile([]byte("vulnerabilities:\n  - id: CVE-2023-4911\n    statement: no setuid binaries in this image\n    expired_at: 2026-03-15\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := scan.Gate(r, scan.Policy{Ignore: ig, Now: now}); err != nil {
		t.Errorf("before expiry: Gate = %v", err)
	}
	if len(findings(r, "CVE-2023-4911")) != 2 || findings(r, "CVE-2023-4911")[0].Suppressed == nil {
		t.Errorf("suppressed findings must stay in the report, marked")
	}
	if err := scan.Gate(r, scan.Policy{Ignore: ig, Now: time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)}); !errors.As(err, &v) {
		t.Errorf("after expiry: Gate = %v, want violation", err)
	}
}

func TestDBMissing(t *testing.T) {
	s := newScanner(t, t.TempDir())
	_, err := s.Scan(context.Background(), debianIndex(t))
	var dbe *DBError
	if !errors.As(err, &dbe) || dbe.Problem != DBMissing || !strings.Contains(err.Error(), "vulnerability db missing") {
		t.Fatalf("Scan = %v, want DBMissing", err)
	}
}

func TestDBStale(t *testing.T) {
	db := fixtureDB(t, now.Add(-200*time.Hour))
	_, err := newScanner(t, db).Scan(context.Background(), debianIndex(t))
	var dbe *DBError
	if !errors.As(err, &dbe) || dbe.Problem != DBStale || dbe.Age != 200*time.Hour {
		t.Fatalf("Scan = %v, want DBStale of 200h", err)
	}
	for _, want := range []string{"stale", "200h0m0s ago", "max age 168h0m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// A larger max age accepts it.
	if _, err := newScanner(t, db, WithMaxAge(300*time.Hour)).Scan(context.Background(), debianIndex(t)); err != nil {
		t.Errorf("max age 300h: %v", err)
	}
	// Allowing a stale DB scans and warns with the age.
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	r, err := newScanner(t, db, WithAllowStale(true), WithLogger(l)).Scan(context.Background(), debianIndex(t))
	if err != nil {
		t.Fatalf("allow stale: %v", err)
	}
	if len(findings(r, "CVE-2023-4911")) == 0 {
		t.Error("allow stale: no findings")
	}
	if !strings.Contains(logs.String(), "stale vulnerability db") || !strings.Contains(logs.String(), "age=200h0m0s") {
		t.Errorf("no stale warning with age in logs:\n%s", logs.String())
	}
}

func TestDBWrongSchema(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	if err := metadata.NewClient(filepath.Join(db, "db")).Update(metadata.Metadata{Version: 1, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	_, err := newScanner(t, db, WithAllowStale(true)).Scan(context.Background(), debianIndex(t))
	var dbe *DBError
	if !errors.As(err, &dbe) || dbe.Problem != DBSchema || !strings.Contains(err.Error(), "schema version 1, want 2") {
		t.Fatalf("Scan = %v, want DBSchema", err)
	}
	// Missing metadata.json alone is "missing" too.
	if err := os.Remove(filepath.Join(db, "db", "metadata.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := status(db, time.Now()); !errors.As(err, &dbe) || dbe.Problem != DBMissing {
		t.Errorf("Status without metadata = %v", err)
	}
}

func TestSBOM(t *testing.T) {
	s := newScanner(t, t.TempDir()) // no DB needed
	bin := goBinary(t, "vulnapp")
	idx := index(t,
		image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...), layer(t, file{name: "app/server", mode: 0o755, data: bin})),
		image(t, arm64, layer(t, debianFiles("arm64", vulnerableDebianPkgs)...), layer(t, file{name: "app/server", mode: 0o755, data: bin})))
	for _, format := range []string{FormatSPDXJSON, FormatCycloneDX} {
		b, err := s.SBOM(context.Background(), idx, format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		out := string(b)
		for _, want := range []string{
			"pkg:golang/golang.org/x/text@v0.3.7", "pkg:golang/stdlib@v1.26", // module and Go version
			"pkg:deb/debian/libc6@2.36-9%2Bdeb12u1?arch=amd64", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u1?arch=arm64",
			"linux/amd64, linux/arm64/v8", // SPDX annotation
		} {
			if format == FormatCycloneDX && strings.Contains(want, ", ") {
				want = "linux/amd64,linux/arm64/v8" // CycloneDX property
			}
			if !strings.Contains(out, want) {
				t.Errorf("%s SBOM lacks %q", format, want)
			}
		}
		switch format {
		case FormatSPDXJSON:
			if !strings.Contains(out, `"spdxVersion": "SPDX-2.3"`) {
				t.Errorf("not SPDX 2.3")
			}
		case FormatCycloneDX:
			if !strings.Contains(out, `"bomFormat": "CycloneDX"`) {
				t.Errorf("not CycloneDX")
			}
		}
	}
	if _, err := s.SBOM(context.Background(), idx, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}
