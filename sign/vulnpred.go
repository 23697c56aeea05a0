package sign

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/slipway-build/slipway/scan"
)

// VulnPredicate is cosign's vulnerability scan predicate
// (PredicateVuln) in the shape `trivy --format cosign-vuln` writes (Trivy
// v0.74.0 pkg/report/predicate): scanner.result is Trivy's own JSON report,
// so policies written for Trivy's output (Results[].Vulnerabilities[]) read
// it unchanged. Slipway's own data goes beside it, in Slipway.
type VulnPredicate struct {
	Invocation VulnInvocation `json:"invocation"`
	Scanner    VulnScanner    `json:"scanner"`
	Metadata   VulnMetadata   `json:"metadata"`
	// Slipway is what Trivy's report does not say; absent in predicates
	// other tools write.
	Slipway *VulnSlipway `json:"slipway,omitempty"`
}

// VulnInvocation is the invocation block (empty in slipway's predicates,
// as in Trivy's).
type VulnInvocation struct {
	Parameters any    `json:"parameters"`
	URI        string `json:"uri"`
	EventID    string `json:"event_id"`
	BuilderID  string `json:"builder.id"`
}

// VulnScanner is the scanner block of VulnPredicate.
type VulnScanner struct {
	// URI is "pkg:github/aquasecurity/trivy@<version>", as Trivy writes it.
	URI     string `json:"uri"`
	Version string `json:"version"`
	DB      VulnDB `json:"db"`
	// Result is Trivy's JSON report (its pkg/types.Report) without the
	// suppressed findings (see VulnSlipway.Suppressed), always with a
	// Results array (empty for an image without findings).
	Result json.RawMessage `json:"result"`
}

// VulnDB names the vulnerability DB; slipway's Version is
// "v<schema> <updatedAt RFC 3339>".
type VulnDB struct {
	URI     string `json:"uri"`
	Version string `json:"version"`
}

// VulnMetadata bounds the scan.
type VulnMetadata struct {
	ScanStartedOn  time.Time `json:"scanStartedOn"`
	ScanFinishedOn time.Time `json:"scanFinishedOn"`
}

// VulnSlipway is slipway's data beside Trivy's report.
type VulnSlipway struct {
	// Subject is the scanned index digest.
	Subject string `json:"subject"`
	// Platforms lists the scanned platforms; each Result's Target in
	// scanner.result starts with one of them ("linux/amd64: ...").
	Platforms []string `json:"platforms"`
	// DB describes the vulnerability DB.
	DB scan.DBInfo `json:"db"`
	// Suppressed holds the findings an ignore rule suppressed when the
	// image was attested, left out of scanner.result as Trivy leaves
	// ignored findings out of its report. Verification counts those whose
	// suppression has expired.
	Suppressed []SuppressedVuln `json:"suppressed,omitempty"`
	// Unjudged lists what the scanner could not judge.
	Unjudged []scan.Unjudged `json:"unjudged,omitempty"`
}

// SuppressedVuln is one suppressed vulnerability of one Result.
type SuppressedVuln struct {
	// Target is the Result's Target in scanner.result.
	Target string `json:"target"`
	// Rule, Statement and ExpiresAt are the ignore rule's (scan.Suppression);
	// a zero ExpiresAt never expires.
	Rule      string    `json:"rule"`
	Statement string    `json:"statement,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Vulnerability is the entry as Trivy wrote it in
	// Results[].Vulnerabilities[].
	Vulnerability json.RawMessage `json:"vulnerability"`
}

// vulnKey identifies a finding in both shapes: Trivy's VulnerabilityID,
// PkgName and InstalledVersion are scan.Finding's ID, PkgName and
// InstalledVersion (scan/trivy merges findings by them).
type vulnKey struct{ id, pkg, version string }

// trivyVuln is the part of a Trivy DetectedVulnerability slipway reads.
type trivyVuln struct {
	VulnerabilityID  string `json:"VulnerabilityID"`
	PkgName          string `json:"PkgName"`
	InstalledVersion string `json:"InstalledVersion"`
	Severity         string `json:"Severity"`
}

func (v trivyVuln) key() vulnKey { return vulnKey{v.VulnerabilityID, v.PkgName, v.InstalledVersion} }

// vulnPredicate builds the cosign vuln predicate from a report: Trivy's
// report (r.TrivyReport) with the findings r marks suppressed moved to
// slipway.suppressed.
func vulnPredicate(r *scan.Report) (*structpb.Struct, error) {
	if r.FinishedAt.IsZero() {
		return nil, errors.New("vuln: report has no finish time")
	}
	if r.Scanner.Name != "trivy" || len(r.TrivyReport) == 0 {
		return nil, fmt.Errorf("vuln: the attestation carries Trivy's own report, and this report (scanner %q) has none", r.Scanner.Name)
	}
	result, suppressed, err := splitSuppressed(r)
	if err != nil {
		return nil, fmt.Errorf("vuln: %w", err)
	}
	version := strings.TrimPrefix(r.Scanner.Version, "v") // Trivy names itself 0.74.0
	dbVersion := fmt.Sprintf("v%d", r.DB.SchemaVersion)
	if !r.DB.UpdatedAt.IsZero() {
		dbVersion += " " + r.DB.UpdatedAt.UTC().Format(time.RFC3339)
	}
	p := VulnPredicate{
		Scanner: VulnScanner{
			URI:     packageurl.NewPackageURL("github", "aquasecurity", "trivy", version, nil, "").ToString(),
			Version: version,
			DB:      VulnDB{Version: dbVersion},
			Result:  result,
		},
		Metadata: VulnMetadata{
			ScanStartedOn:  r.StartedAt.UTC(),
			ScanFinishedOn: r.FinishedAt.UTC(),
		},
		Slipway: &VulnSlipway{
			Subject:    r.Subject,
			Platforms:  r.Platforms,
			DB:         r.DB,
			Suppressed: suppressed,
			Unjudged:   r.Unjudged,
		},
	}
	s, err := jsonStruct(p)
	if err != nil {
		return nil, fmt.Errorf("vuln: %w", err)
	}
	return s, nil
}

// splitSuppressed returns r.TrivyReport without the vulnerabilities of
// suppressed findings, and those vulnerabilities. Every other field of
// Trivy's report is kept as Trivy wrote it. It fails when the Trivy report
// and r's findings disagree: the attestation must say what the gate judged.
func splitSuppressed(r *scan.Report) (json.RawMessage, []SuppressedVuln, error) {
	findings := map[vulnKey]*scan.Finding{}
	for i := range r.Findings {
		f := &r.Findings[i]
		findings[vulnKey{f.ID, f.PkgName, f.InstalledVersion}] = f
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.TrivyReport, &top); err != nil || top == nil {
		return nil, nil, fmt.Errorf("trivy report is not a JSON object: %v", err)
	}
	var results []map[string]json.RawMessage
	if raw, ok := top["Results"]; ok {
		if err := json.Unmarshal(raw, &results); err != nil {
			return nil, nil, fmt.Errorf("trivy report Results: %w", err)
		}
	}
	seen := map[vulnKey]bool{}
	var suppressed []SuppressedVuln
	for i, res := range results {
		var target string
		if err := json.Unmarshal(res["Target"], &target); err != nil {
			return nil, nil, fmt.Errorf("trivy report Results[%d].Target: %w", i, err)
		}
		raw, ok := res["Vulnerabilities"]
		if !ok {
			continue
		}
		var vulns []json.RawMessage
		if err := json.Unmarshal(raw, &vulns); err != nil {
			return nil, nil, fmt.Errorf("trivy report %s: Vulnerabilities: %w", target, err)
		}
		kept := []json.RawMessage{}
		for _, v := range vulns {
			var tv trivyVuln
			if err := json.Unmarshal(v, &tv); err != nil {
				return nil, nil, fmt.Errorf("trivy report %s: vulnerability: %w", target, err)
			}
			f, ok := findings[tv.key()]
			if !ok {
				return nil, nil, fmt.Errorf("trivy report %s lists %s in %s %s, which the report's findings do not", target, tv.VulnerabilityID, tv.PkgName, tv.InstalledVersion)
			}
			seen[tv.key()] = true
			if s := f.Suppressed; s != nil {
				suppressed = append(suppressed, SuppressedVuln{Target: target, Rule: s.Rule, Statement: s.Statement, ExpiresAt: s.ExpiresAt.UTC(), Vulnerability: v})
				continue
			}
			kept = append(kept, v)
		}
		if len(kept) == 0 {
			delete(res, "Vulnerabilities") // Trivy omits an empty list
			continue
		}
		b, err := json.Marshal(kept)
		if err != nil {
			return nil, nil, err
		}
		res["Vulnerabilities"] = b
	}
	for k := range findings {
		if !seen[k] {
			return nil, nil, fmt.Errorf("finding %s in %s %s is not in the trivy report", k.id, k.pkg, k.version)
		}
	}
	// Trivy omits an empty Results; slipway always writes it, so a reader
	// can tell "no findings" from "not Trivy's report".
	if results == nil {
		results = []map[string]json.RawMessage{}
	}
	b, err := json.Marshal(results)
	if err != nil {
		return nil, nil, err
	}
	top["Results"] = b
	out, err := json.Marshal(top)
	if err != nil {
		return nil, nil, err
	}
	return out, suppressed, nil
}

// vulnAttestation is what verification reads of a vuln predicate.
type vulnAttestation struct {
	finished time.Time
	// vulns are scanner.result's Results[].Vulnerabilities[], as "target"
	// and entry.
	vulns []targetVuln
	// suppressed are slipway.suppressed.
	suppressed []suppressedRead
}

type targetVuln struct {
	target string
	v      trivyVuln
}

type suppressedRead struct {
	Target        string    `json:"target"`
	ExpiresAt     time.Time `json:"expiresAt"`
	Vulnerability trivyVuln `json:"vulnerability"`
}

// readVulnPredicate decodes a vuln predicate. It fails when the predicate
// is not one (not JSON, wrong types) or when scanner.result has no Results
// array: a predicate in another shape (slipway's older one held its own
// report there) must not read as "no findings".
func readVulnPredicate(raw json.RawMessage) (*vulnAttestation, error) {
	var p struct {
		Scanner struct {
			Result *struct {
				Results *[]struct {
					Target          string      `json:"Target"`
					Vulnerabilities []trivyVuln `json:"Vulnerabilities"`
				} `json:"Results"`
			} `json:"result"`
		} `json:"scanner"`
		Metadata VulnMetadata `json:"metadata"`
		Slipway  *struct {
			Suppressed []suppressedRead `json:"suppressed"`
		} `json:"slipway"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	if p.Scanner.Result == nil || p.Scanner.Result.Results == nil {
		return nil, errors.New("scanner.result has no Results (not a Trivy report)")
	}
	a := &vulnAttestation{finished: p.Metadata.ScanFinishedOn}
	for _, res := range *p.Scanner.Result.Results {
		for _, v := range res.Vulnerabilities {
			if v.VulnerabilityID == "" {
				return nil, fmt.Errorf("a vulnerability of %s has no VulnerabilityID", res.Target)
			}
			a.vulns = append(a.vulns, targetVuln{res.Target, v})
		}
	}
	if p.Slipway != nil {
		for _, s := range p.Slipway.Suppressed {
			if s.Vulnerability.VulnerabilityID == "" {
				return nil, fmt.Errorf("a suppressed vulnerability of %s has no VulnerabilityID", s.Target)
			}
		}
		a.suppressed = p.Slipway.Suppressed
	}
	return a, nil
}

// atOrAbove describes each vulnerability at or above limit (a
// scan.Severity rank) that counts at now: every entry of scanner.result,
// and each suppressed one whose suppression expired by now. An unknown
// severity string ranks as UNKNOWN.
// A vulnerability listed for several targets (platforms) is described once.
func (a *vulnAttestation) atOrAbove(limit int, now time.Time) []string {
	var bad []string
	seen := map[vulnKey]bool{}
	rank := func(v trivyVuln) int { return scan.Severity(strings.ToUpper(v.Severity)).Rank() }
	first := func(v trivyVuln) bool {
		if seen[v.key()] {
			return false
		}
		seen[v.key()] = true
		return true
	}
	for _, tv := range a.vulns {
		if rank(tv.v) >= limit && first(tv.v) {
			bad = append(bad, fmt.Sprintf("%s %s in %s %s (%s)", tv.v.Severity, tv.v.VulnerabilityID, tv.v.PkgName, tv.v.InstalledVersion, tv.target))
		}
	}
	for _, s := range a.suppressed {
		v := s.Vulnerability
		if rank(v) >= limit && !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt) && first(v) {
			bad = append(bad, fmt.Sprintf("%s %s in %s %s (%s; suppression expired %s)", v.Severity, v.VulnerabilityID, v.PkgName, v.InstalledVersion,
				s.Target, s.ExpiresAt.UTC().Format(time.RFC3339)))
		}
	}
	return bad
}
