package scan

import (
	"testing"
	"time"
)

// fuzzReport has findings with and without package paths and URLs, so the
// path and purl matchers run on every parsed rule.
func fuzzReport() *Report {
	return &Report{Findings: []Finding{
		{ID: "CVE-2022-32149", PkgName: "golang.org/x/text", PkgPath: "app/hello",
			PURL: "pkg:golang/golang.org/x/text@v0.3.7"},
		{ID: "CVE-2023-0001", PkgName: "libc6", PURL: "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12",
			PkgPaths: []string{"usr/lib/x", "/opt/y"}},
		{ID: "GHSA-xxxx-yyyy-zzzz", PkgName: "x"},
	}}
}

// checkApply applies f and checks what no ignore file may do, whatever it
// contains: suppress a finding whose id no active rule names, or report a
// count that differs from the findings marked.
func checkApply(t *testing.T, f *IgnoreFile, now time.Time) {
	t.Helper()
	r := fuzzReport()
	n := f.Apply(r, now)
	marked := 0
	for _, fd := range r.Findings {
		if fd.Suppressed == nil {
			continue
		}
		marked++
		named := false
		for _, rule := range f.Vulnerabilities {
			if rule.ID == fd.ID && rule.Active(now) {
				named = true
			}
		}
		if !named {
			t.Fatalf("finding %s suppressed by %q, which no active rule names", fd.ID, fd.Suppressed.Rule)
		}
	}
	if n != marked {
		t.Fatalf("Apply returned %d, marked %d", n, marked)
	}
	// Applying again at the same time gives the same result.
	if again := f.Apply(r, now); again != n {
		t.Fatalf("second Apply returned %d, first %d", again, n)
	}
}

func FuzzParseIgnoreFile(f *testing.F) {
	for _, s := range []string{
		"",
		"vulnerabilities:\n  - id: CVE-2022-32149\n    statement: not reachable\n",
		"vulnerabilities:\n  - id: CVE-2022-32149\n    paths: [\"app/**\"]\n    expired_at: 2030-01-01\n",
		"vulnerabilities:\n  - id: CVE-2023-0001\n    purls: [\"pkg:deb/debian/libc6\"]\n",
		"vulnerabilities:\n  - id: CVE-2023-0001\n    purls: [\"pkg:deb/debian/libc6?arch=amd64\"]\n    paths: [\"usr/**/x\"]\n",
		"vulnerabilities:\n  - id: X\n    paths: [\"[\"]\n",
		"vulnerabilities:\n  - id: X\n    purls: [\"pkg:\"]\n",
		"misconfigurations:\n  - id: AVD-1\nsecrets:\n  - id: aws\nlicenses:\n  - id: GPL\n",
		"vulnerabilities:\n  - paths: [a]\n",
		"vulnerabilities: 5\n",
		"unknown: 1\n",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ig, err := ParseIgnoreFile(data)
		if err != nil {
			return
		}
		checkApply(t, ig, now)
	})
}

func FuzzParsePlainIgnore(f *testing.F) {
	for _, s := range []string{
		"", "CVE-2022-32149\n", "# comment\nCVE-2022-32149 exp:2030-01-01\n\n", "CVE-1 exp:2020-13-45\n",
		"CVE-1 exp:\n", "GHSA-xxxx-yyyy-zzzz extra words exp:2029-02-28\n", "\x00\n\t \r\n",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ig, err := parsePlainIgnore(data)
		if err != nil {
			return
		}
		checkApply(t, ig, now)
	})
}
