package sign

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

func TestSignRejectsBadAttestationInput(t *testing.T) {
	s, err := NewKeyed(testKey(t, "cosign"))
	if err != nil {
		t.Fatal(err)
	}
	idx := testIndex(t)
	other := testIndex(t)
	repo := mustRepo(t, "registry.example/app")
	noBuilder := testProvenance()
	noBuilder.BuilderID = ""
	noParams := testProvenance()
	noParams.ExternalParameters = nil
	noBaseDigest := testProvenance()
	noBaseDigest.BaseImages = []BaseImage{{Ref: "alpine:3"}}
	for _, tc := range []struct {
		name string
		opt  SignOption
		want string
	}{
		{"cyclonedx labelled spdx", WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte(`{"bomFormat":"CycloneDX"}`)}), "no spdxVersion"},
		{"spdx labelled cyclonedx", WithSBOM(SBOM{Format: vocab.SBOMCycloneDX, Document: []byte(testSPDX)}), "CycloneDX"},
		{"sbom not json", WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte("SPDXVersion: SPDX-2.3")}), "not a JSON object"},
		{"unknown sbom format", WithSBOM(SBOM{Format: "spdx-tv", Document: []byte(testSPDX)}), "unknown format"},
		{"report of another image", WithVulnReport(testReport(t, other, time.Now(), scan.SeverityLow)), "not the signed index"},
		{"report without finish time", WithVulnReport(&scan.Report{}), "no finish time"},
		{"provenance without builder", WithProvenance(noBuilder), "builder id is required"},
		{"provenance without parameters", WithProvenance(noParams), "provenance"},
		{"base image without digest", WithProvenance(noBaseDigest), "has no digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Sign(context.Background(), idx, repo, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestStatementDeterministic: the same input gives the same statement bytes
// (protojson varies whitespace on purpose; slipway compacts it away).
func TestStatementDeterministic(t *testing.T) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	p := testProvenance()
	var first []byte
	for i := range 3 {
		body, err := provenancePredicate(&p)
		if err != nil {
			t.Fatal(err)
		}
		st, err := statement("registry.example/app", h, PredicateProvenance, body)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = st
			if !json.Valid(st) || strings.Contains(string(st), ": ") {
				t.Fatalf("statement is not compact JSON: %s", st)
			}
		} else if string(st) != string(first) {
			t.Fatalf("statement bytes differ:\n%s\n%s", first, st)
		}
	}
}

// TestVulnReasons covers the vuln policy rules without a registry: newest
// attestation wins, live suppressions do not count, expired ones do.
func TestVulnReasons(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	attest := func(finished time.Time, findings ...scan.Finding) verifiedStatement {
		return verifiedStatement{st: &intotoStatement{PredicateType: PredicateVuln, Predicate: predicateJSON(t, vulnTestReport(t, finished, findings...))}}
	}
	raw := func(p string) verifiedStatement {
		return verifiedStatement{st: &intotoStatement{PredicateType: PredicateVuln, Predicate: json.RawMessage(p)}}
	}
	// Trivy's own cosign-vuln predicate (a HIGH finding), made recent.
	var golden map[string]any
	if err := json.Unmarshal(goldenCosignVuln(t), &golden); err != nil {
		t.Fatal(err)
	}
	golden["metadata"] = map[string]any{"scanStartedOn": now.Add(-time.Minute), "scanFinishedOn": now.Add(-time.Minute)}
	trivyMade, _ := json.Marshal(golden)
	delete(golden["scanner"].(map[string]any)["result"].(map[string]any), "Results")
	noResults, _ := json.Marshal(golden)
	oldShape := `{"scanner":{"uri":"pkg:generic/trivy@0.74.0","result":{"subject":"sha256:ab","findings":[{"id":"CVE-1","severity":"CRITICAL"}]}},"metadata":{"scanFinishedOn":"` + now.Format(time.RFC3339) + `"}}`
	crit := scan.Finding{ID: "CVE-1", Severity: scan.SeverityCritical, PkgName: "p", InstalledVersion: "1"}
	high := scan.Finding{ID: "CVE-2", Severity: scan.SeverityHigh, PkgName: "p", InstalledVersion: "1"}
	live := crit
	live.Suppressed = &scan.Suppression{Rule: "CVE-1", ExpiresAt: now.Add(time.Hour)}
	expired := crit
	expired.Suppressed = &scan.Suppression{Rule: "CVE-1", ExpiresAt: now.Add(-time.Hour)}
	unknown := scan.Finding{ID: "CVE-3", Severity: "WEIRD", PkgName: "p"}

	for _, tc := range []struct {
		name string
		atts []verifiedStatement
		pol  Policy
		want string // "" = no reason
	}{
		{"high under critical limit", []verifiedStatement{attest(now, high)}, Policy{MaxSeverity: scan.SeverityCritical}, ""},
		{"high at high limit", []verifiedStatement{attest(now, high)}, Policy{MaxSeverity: "high"}, "at or above high: HIGH CVE-2"},
		{"newest wins over older critical", []verifiedStatement{attest(now.Add(-time.Hour), crit), attest(now, high)}, Policy{MaxSeverity: scan.SeverityCritical}, ""},
		{"newest critical wins over older clean", []verifiedStatement{attest(now), attest(now.Add(-time.Hour)), attest(now.Add(time.Minute), crit)}, Policy{MaxSeverity: scan.SeverityCritical}, "CRITICAL CVE-1"},
		{"live suppression", []verifiedStatement{attest(now, live)}, Policy{MaxSeverity: scan.SeverityHigh}, ""},
		{"expired suppression", []verifiedStatement{attest(now, expired)}, Policy{MaxSeverity: scan.SeverityHigh}, "CRITICAL CVE-1"},
		{"unknown severity ranks lowest", []verifiedStatement{attest(now, unknown)}, Policy{MaxSeverity: scan.SeverityLow}, ""},
		{"unknown severity denied at UNKNOWN", []verifiedStatement{attest(now, unknown)}, Policy{MaxSeverity: scan.SeverityUnknown}, "WEIRD CVE-3"},
		{"fresh scan", []verifiedStatement{attest(now.Add(-time.Hour))}, Policy{MaxScanAge: 2 * time.Hour}, ""},
		{"stale scan", []verifiedStatement{attest(now.Add(-3 * time.Hour))}, Policy{MaxScanAge: 2 * time.Hour}, "older than the maximum 2h0m0s"},
		{"scan from the future", []verifiedStatement{attest(now.Add(time.Hour))}, Policy{MaxScanAge: 2 * time.Hour}, "in the future"},
		{"no attestation", nil, Policy{MaxScanAge: time.Hour}, "no vuln attestation"},
		{"high on one platform only", []verifiedStatement{attest(now, scan.Finding{ID: "CVE-4", Severity: scan.SeverityHigh, PkgName: "p", InstalledVersion: "1", Platforms: []string{"linux/arm64"}})},
			Policy{MaxSeverity: scan.SeverityHigh}, "1 finding(s) at or above HIGH: HIGH CVE-4 in p 1 (linux/arm64: app/server)"},
		{"high on two platforms counts once", []verifiedStatement{attest(now, high)}, Policy{MaxSeverity: scan.SeverityHigh}, "1 finding(s)"},
		{"trivy's own predicate at high limit", []verifiedStatement{raw(string(trivyMade))}, Policy{MaxSeverity: scan.SeverityHigh}, "HIGH CVE-2022-32149 in golang.org/x/text v0.3.7 (app/server)"},
		{"trivy's own predicate at critical limit", []verifiedStatement{raw(string(trivyMade))}, Policy{MaxSeverity: scan.SeverityCritical, MaxScanAge: time.Hour}, ""},
		{"no Results", []verifiedStatement{raw(string(noResults))}, Policy{MaxSeverity: scan.SeverityCritical}, "unreadable"},
		{"slipway's old predicate shape", []verifiedStatement{raw(oldShape)}, Policy{MaxSeverity: scan.SeverityHigh}, "unreadable"},
		{"old shape under max scan age only", []verifiedStatement{raw(oldShape)}, Policy{MaxScanAge: time.Hour}, "unreadable"},
		{"unreadable beside a good one", []verifiedStatement{attest(now, high), raw(`{"scanner":`)}, Policy{MaxSeverity: scan.SeverityCritical}, "unreadable"},
		{"result not an object", []verifiedStatement{raw(`{"scanner":{"result":"CVE-1"},"metadata":{}}`)}, Policy{MaxSeverity: scan.SeverityCritical}, "unreadable"},
		{"severity not a string", []verifiedStatement{raw(`{"scanner":{"result":{"Results":[{"Target":"t","Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":4}]}]}},"metadata":{}}`)},
			Policy{MaxSeverity: scan.SeverityCritical}, "unreadable"},
		{"vulnerability without id", []verifiedStatement{raw(`{"scanner":{"result":{"Results":[{"Target":"t","Vulnerabilities":[{"Severity":"CRITICAL"}]}]}},"metadata":{}}`)},
			Policy{MaxSeverity: scan.SeverityCritical}, "unreadable"},
		{"suppression expiring at verification", []verifiedStatement{attest(now, func() scan.Finding {
			f := crit
			f.Suppressed = &scan.Suppression{Rule: "CVE-1", ExpiresAt: now}
			return f
		}())}, Policy{MaxSeverity: scan.SeverityHigh}, "suppression expired"},
		{"suppression without expiry", []verifiedStatement{attest(now, func() scan.Finding {
			f := crit
			f.Suppressed = &scan.Suppression{Rule: "CVE-1"}
			return f
		}())}, Policy{MaxSeverity: scan.SeverityHigh}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vr := &verifier{opts: makeOptions([]Option{withClock(func() time.Time { return now })}),
				atts: map[string][]verifiedStatement{vocab.KindVuln: tc.atts}}
			got := strings.Join(vr.vulnReasons(&tc.pol), "; ")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("reasons = %q, want %q", got, tc.want)
			}
		})
	}
}
