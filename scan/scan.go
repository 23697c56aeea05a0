// Package scan defines slipway's vulnerability scanner interface, its report
// type and the gate that turns a report into a pass or a policy violation.
// The Trivy implementation lives in scan/trivy; nothing else imports Trivy.
package scan

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultDBMaxAge is the oldest vulnerability DB a scan accepts by default
// (scan.db.max_age), measured from the DB's UpdatedAt.
const DefaultDBMaxAge = 168 * time.Hour

// Scanner scans an image index assembled locally, every platform of it.
type Scanner interface {
	// Scan analyses every platform manifest of idx and returns one merged
	// report holding all findings, of every severity.
	Scan(ctx context.Context, idx v1.ImageIndex) (*Report, error)
}

// Report is the result of scanning one image index.
type Report struct {
	// Subject is the digest of the scanned index.
	Subject string `json:"subject"`
	// Scanner names the scanner and its version.
	Scanner ScannerInfo `json:"scanner"`
	// DB describes the vulnerability database used.
	DB DBInfo `json:"db"`
	// StartedAt and FinishedAt bound the scan.
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// Platforms lists the scanned platforms ("linux/amd64", ...), sorted.
	Platforms []string `json:"platforms"`
	// Cached is set when the report came from a report cache rather than
	// a scan (see Cached); it is not part of the serialised report.
	Cached bool `json:"-"`
	// Findings holds every finding, deduplicated by vulnerability id, package
	// and installed version, sorted by severity (worst first) then id.
	Findings []Finding `json:"findings"`
	// Unjudged lists what the scanner could not judge (see Unjudged); the
	// gate fails on each unless its reason is allowed.
	Unjudged []Unjudged `json:"unjudged,omitempty"`
	// TrivyReport is the scanner's own report of the same scan in Trivy's
	// JSON format (its pkg/types.Report: SchemaVersion, ArtifactName,
	// Results[].Vulnerabilities[]), as Trivy itself encodes it, holding
	// every finding, suppressed or not: one Result per platform and target,
	// the Target prefixed with the platform ("linux/amd64: app/server").
	// Every vulnerability in it is a Finding (same id, package name and
	// installed version) and every Finding is in it. The vuln attestation
	// carries it, suppressed findings moved aside, so policies written for
	// `trivy --format cosign-vuln` read it. scan/trivy sets it; it is nil
	// for other scanners. It is not part of the JSON report (WriteJSON);
	// the report cache keeps it.
	TrivyReport json.RawMessage `json:"-"`
	// MakeSBOM, when set, makes an SBOM of the scanned index in an SBOM
	// format (FormatSPDXJSON, FormatCycloneDX): the report formats that
	// list packages rather than findings. scan/trivy and Cached set it;
	// it is not part of the serialised report.
	MakeSBOM func(ctx context.Context, format Format) ([]byte, error) `json:"-"`
}

// Unjudged is a part of the image, or a condition of the scan, that the
// scanner could not judge: no findings there does not mean no
// vulnerabilities there.
type Unjudged struct {
	// Reason is one of UnjudgedReasons.
	Reason string `json:"reason"`
	// Platform is the platform concerned; empty for the whole scan.
	Platform string `json:"platform,omitempty"`
	// Detail says what was seen.
	Detail string `json:"detail"`
}

// Reasons for Unjudged; scan.allow_unjudged names them.
const (
	// UnjudgedUnknownOS: an OS package database is present but the OS
	// (family or release file) is not recognised.
	UnjudgedUnknownOS = "unknown-os"
	// UnjudgedUnsupportedOS: the OS is recognised but its release is not
	// one the scanner has advisories for (unknown or end-of-life release,
	// or a family without OS package detection).
	UnjudgedUnsupportedOS = "unsupported-os"
	// UnjudgedNoPackageDB: an OS is detected but no package database is
	// visible (removed, or in a place the scanner does not read).
	UnjudgedNoPackageDB = "no-package-db"
	// UnjudgedNoGoBuildInfo: the Go binary slipway built has no readable
	// module information, so its dependencies cannot be checked.
	UnjudgedNoGoBuildInfo = "no-go-buildinfo"
	// UnjudgedDBFromFuture: the vulnerability DB's UpdatedAt is more than
	// an hour ahead of the clock (a wrong clock or a forged DB).
	UnjudgedDBFromFuture = "db-from-future"
)

// UnjudgedReasons are the valid Unjudged reasons.
var UnjudgedReasons = []string{UnjudgedUnknownOS, UnjudgedUnsupportedOS, UnjudgedNoPackageDB,
	UnjudgedNoGoBuildInfo, UnjudgedDBFromFuture}

// ScannerInfo identifies the scanner.
type ScannerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DBInfo describes the vulnerability database a report was made with.
type DBInfo struct {
	// SchemaVersion is the DB schema version (Trivy: 2).
	SchemaVersion int       `json:"schemaVersion"`
	UpdatedAt     time.Time `json:"updatedAt"`
	NextUpdate    time.Time `json:"nextUpdate,omitzero"`
	DownloadedAt  time.Time `json:"downloadedAt,omitzero"`
}

// Finding is one vulnerability in one package version.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	PkgName  string   `json:"pkgName"`
	PkgType  string   `json:"pkgType"` // e.g. gobinary, debian, alpine
	// PkgPath is the file in the image that holds the package (a Go
	// binary), empty for OS packages. When several files hold the same
	// package version, it is the first of PkgPaths.
	PkgPath string `json:"pkgPath,omitempty"`
	// PkgPaths lists every such file when there is more than one, sorted.
	PkgPaths         []string `json:"pkgPaths,omitempty"`
	PURL             string   `json:"purl,omitempty"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersion     string   `json:"fixedVersion,omitempty"`
	Status           string   `json:"status,omitempty"`
	Title            string   `json:"title,omitempty"`
	PrimaryURL       string   `json:"primaryURL,omitempty"`
	// Platforms lists every platform the finding occurs in, sorted.
	Platforms []string `json:"platforms"`
	// Suppressed is set when an ignore rule matched; the finding stays in
	// the report but does not count for the gate.
	Suppressed *Suppression `json:"suppressed,omitempty"`
}

// Suppression records why a finding was ignored.
type Suppression struct {
	// Rule names what suppressed the finding: FILE:ID for an ignore rule,
	// "vex:FILE" for a VEX statement.
	Rule string `json:"rule"`
	// Statement is the ignore rule's statement, or for VEX the status and
	// justification ("not_affected: vulnerable_code_not_in_execute_path").
	Statement string    `json:"statement,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Kind is SuppressedByVEX for a VEX statement; empty for an ignore rule.
	Kind string `json:"kind,omitempty"`
	// Status is the VEX status that suppressed the finding (not_affected or
	// fixed), as Trivy's ModifiedFindings name it.
	Status string `json:"status,omitempty"`
	// Justification is the VEX justification, when the statement gives one
	// (e.g. vulnerable_code_not_in_execute_path).
	Justification string `json:"justification,omitempty"`
}

// SuppressedByVEX is the Suppression.Kind of a finding a VEX statement
// (scan.vex) suppressed: status not_affected or fixed.
const SuppressedByVEX = "vex"

// Severity is a vulnerability severity: UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL.
type Severity string

// Severities known to slipway, lowest first.
const (
	SeverityUnknown  Severity = "UNKNOWN"
	SeverityLow      Severity = "LOW"
	SeverityMedium   Severity = "MEDIUM"
	SeverityHigh     Severity = "HIGH"
	SeverityCritical Severity = "CRITICAL"
)

// DefaultSeverities are the severities that fail the gate when a Policy
// names none.
var DefaultSeverities = []Severity{SeverityHigh, SeverityCritical}

// SeveritiesDescending lists every severity, the most severe first.
var SeveritiesDescending = []Severity{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityUnknown}

// Rank orders severities: UNKNOWN 0, LOW 1, MEDIUM 2, HIGH 3, CRITICAL 4.
// A value that is not a known severity ranks as UNKNOWN.
func (s Severity) Rank() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// ParseSeverity parses a severity name, case-insensitively.
func ParseSeverity(s string) (Severity, error) {
	switch sev := Severity(strings.ToUpper(strings.TrimSpace(s))); sev {
	case SeverityUnknown, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return sev, nil
	}
	return "", fmt.Errorf("unknown severity %q (want UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL)", s)
}

// Counts returns the number of findings per severity, leaving out suppressed
// findings. Severities without findings are absent from the map.
func (r *Report) Counts() map[Severity]int {
	counts := make(map[Severity]int)
	for _, f := range r.Findings {
		if f.Suppressed == nil {
			counts[f.Severity]++
		}
	}
	return counts
}

// Sort orders findings by severity (worst first), then id, package name,
// installed version and package path, and sorts each finding's platforms.
func (r *Report) Sort() {
	for i := range r.Findings {
		slices.Sort(r.Findings[i].Platforms)
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if c := cmp.Compare(b.Severity.Rank(), a.Severity.Rank()); c != 0 {
			return c
		}
		return cmp.Or(
			cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.PkgName, b.PkgName),
			cmp.Compare(a.InstalledVersion, b.InstalledVersion),
			cmp.Compare(a.PkgPath, b.PkgPath),
		)
	})
}
