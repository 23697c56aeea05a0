package scan

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestIgnoreFileExpiry(t *testing.T) {
	ig, err := ParseIgnoreFile([]byte(ignoreYAML))
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Severities: []Severity{SeverityCritical}, Ignore: ig}

	// Before expired_at the CRITICAL finding is suppressed but kept.
	p.Now = time.Date(2026, 3, 31, 23, 0, 0, 0, time.UTC)
	r := sampleReport()
	if err := Gate(r, p); err != nil {
		t.Fatalf("before expiry: Gate = %v, want pass", err)
	}
	f := find(t, r, "CVE-crit")
	if f.Suppressed == nil || f.Suppressed.Statement != "not reachable, zlib inflate unused" ||
		!f.Suppressed.ExpiresAt.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("CVE-crit suppression = %+v", f.Suppressed)
	}
	if len(r.Findings) != 4 {
		t.Errorf("suppressed finding removed from report")
	}

	// From expired_at on the rule no longer suppresses: the gate fails again.
	p.Now = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	err = Gate(r, p)
	var v *PolicyViolation
	if !errors.As(err, &v) || len(v.Findings) != 1 || v.Findings[0].ID != "CVE-crit" {
		t.Fatalf("after expiry: Gate = %v, want violation by CVE-crit", err)
	}
	if find(t, r, "CVE-crit").Suppressed != nil {
		t.Errorf("expired rule still marks the finding")
	}
}

func TestIgnoreRuleMatching(t *testing.T) {
	ig, err := ParseIgnoreFile([]byte(ignoreYAML))
	if err != nil {
		t.Fatal(err)
	}
	r := sampleReport()
	if n := ig.Apply(r, t0); n != 2 {
		t.Errorf("Apply suppressed %d, want 2", n)
	}
	// Path and purl both match.
	if find(t, r, "GHSA-high").Suppressed == nil {
		t.Error("GHSA-high: path+purl rule did not match")
	}
	// A purl-restricted rule does not match a finding without a purl.
	if find(t, r, "CVE-unfixed").Suppressed != nil {
		t.Error("CVE-unfixed: purl rule matched a finding without purl")
	}

	for _, tc := range []struct {
		name string
		rule IgnoreRule
		f    Finding
		want bool
	}{
		{"other path", IgnoreRule{ID: "X", Paths: []string{"usr/bin/*"}}, Finding{ID: "X", PkgPath: "app/server"}, false},
		{"glob path", IgnoreRule{ID: "X", Paths: []string{"/usr/**"}}, Finding{ID: "X", PkgPath: "usr/local/bin/app"}, true},
		{"purl version", IgnoreRule{ID: "X", PURLs: []string{"pkg:golang/golang.org/x/net@v0.1.0"}},
			Finding{ID: "X", PURL: "pkg:golang/golang.org/x/net@v0.2.0"}, false},
		{"purl qualifier", IgnoreRule{ID: "X", PURLs: []string{"pkg:deb/debian/tar?arch=arm64"}},
			Finding{ID: "X", PURL: "pkg:deb/debian/tar@1.34?arch=arm64&distro=debian-12"}, true},
		{"other id", IgnoreRule{ID: "Y"}, Finding{ID: "X"}, false},
	} {
		if got := tc.rule.Matches(&tc.f); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseIgnoreFileErrors(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field": "vulnerabilities:\n  - id: X\n    expires: 2025-01-01\n",
		"bad purl":      "vulnerabilities:\n  - id: X\n    purls: [\"not a purl\"]\n",
		"bad pattern":   "vulnerabilities:\n  - id: X\n    paths: [\"a/[\"]\n",
		"no id":         "vulnerabilities:\n  - statement: hi\n",
	} {
		if _, err := ParseIgnoreFile([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ParseIgnoreFile([]byte("secrets:\n  - id: aws-access-key-id\n")); err != nil {
		t.Errorf("Trivy secrets section rejected: %v", err)
	}
}

func TestLoadPlainIgnoreFile(t *testing.T) {
	path := t.TempDir() + "/.trivyignore"
	if err := os.WriteFile(path, []byte("# comment\nCVE-crit exp:2026-04-01\nGHSA-high\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ig, err := LoadIgnoreFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleReport()
	ig.Apply(r, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	if find(t, r, "CVE-crit").Suppressed != nil || find(t, r, "GHSA-high").Suppressed == nil {
		t.Errorf("plain ignore file applied wrongly: %+v", r.Findings)
	}
	if !strings.HasSuffix(find(t, r, "GHSA-high").Suppressed.Rule, ".trivyignore:GHSA-high") {
		t.Errorf("rule name = %q", find(t, r, "GHSA-high").Suppressed.Rule)
	}
}
