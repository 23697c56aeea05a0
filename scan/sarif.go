package scan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// SARIF 2.1.0 output, shaped for GitHub code scanning: one rule per
// vulnerability id with a "security-severity" score, one result per finding
// with a physical location, suppressed findings carried as accepted external
// suppressions (GitHub closes those alerts rather than hiding the evidence).

const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	sarifRootID  = "ROOTPATH"
)

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool               sarifTool                   `json:"tool"`
	Results            []sarifResult               `json:"results"`
	OriginalURIBaseIDs map[string]sarifArtifactLoc `json:"originalUriBaseIds"`
	Properties         map[string]any              `json:"properties,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	FullName       string      `json:"fullName,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Version        string      `json:"version,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	ShortDescription     sarifText      `json:"shortDescription"`
	FullDescription      sarifText      `json:"fullDescription"`
	HelpURI              string         `json:"helpUri,omitempty"`
	Help                 sarifText      `json:"help"`
	DefaultConfiguration sarifConfig    `json:"defaultConfiguration"`
	Properties           map[string]any `json:"properties"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID       string             `json:"ruleId"`
	RuleIndex    int                `json:"ruleIndex"`
	Level        string             `json:"level"`
	Message      sarifText          `json:"message"`
	Locations    []sarifLocation    `json:"locations"`
	Suppressions []sarifSuppression `json:"suppressions,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
	Message          *sarifText    `json:"message,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifactLoc `json:"artifactLocation"`
	Region           sarifRegion      `json:"region"`
}

type sarifArtifactLoc struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
	EndLine     int `json:"endLine"`
	EndColumn   int `json:"endColumn"`
}

type sarifSuppression struct {
	Kind          string `json:"kind"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
}

// SARIFLevel maps a severity to a SARIF level: CRITICAL and HIGH are
// "error", MEDIUM "warning", LOW and UNKNOWN "note".
func SARIFLevel(s Severity) string {
	switch s {
	case SeverityCritical, SeverityHigh:
		return "error"
	case SeverityMedium:
		return "warning"
	}
	return "note"
}

// SecuritySeverity is the score GitHub code scanning reads from a rule's
// "security-severity" property to rank an alert: ≥ 9.0 critical, 7.0–8.9
// high, 4.0–6.9 medium, 0.1–3.9 low. slipway derives it from the severity
// (not from a CVSS vector) so that GitHub ranks alerts exactly as the gate
// does.
func SecuritySeverity(s Severity) string {
	switch s {
	case SeverityCritical:
		return "9.5"
	case SeverityHigh:
		return "8.0"
	case SeverityMedium:
		return "5.5"
	case SeverityLow:
		return "2.0"
	}
	return "0.0"
}

// WriteSARIF writes r as a SARIF 2.1.0 log that GitHub code scanning
// accepts: rule ids are vulnerability ids, levels and security-severity
// follow the severity, each result is located at the package's file in the
// image (the binary for Go modules, the package database for OS packages).
func WriteSARIF(w io.Writer, r *Report) error {
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name:           "slipway",
			FullName:       strings.TrimSpace("slipway vulnerability scan (" + r.Scanner.Name + " " + r.Scanner.Version + ")"),
			InformationURI: "https://github.com/slipway-build/slipway",
			Version:        r.Scanner.Version,
			Rules:          []sarifRule{},
		}},
		Results: []sarifResult{},
		OriginalURIBaseIDs: map[string]sarifArtifactLoc{
			sarifRootID: {URI: "file:///"},
		},
		Properties: map[string]any{
			"subject":     r.Subject,
			"platforms":   r.Platforms,
			"dbUpdatedAt": r.DB.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z"),
		},
	}
	ruleIndex := make(map[string]int)
	for _, f := range r.Findings {
		idx, ok := ruleIndex[f.ID]
		if !ok {
			idx = len(run.Tool.Driver.Rules)
			ruleIndex[f.ID] = idx
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRuleFor(f))
		}
		res := sarifResult{
			RuleID:    f.ID,
			RuleIndex: idx,
			Level:     SARIFLevel(f.Severity),
			Message:   sarifText{Text: resultMessage(f)},
			Locations: []sarifLocation{{
				PhysicalLocation: sarifPhysical{
					ArtifactLocation: sarifArtifactLoc{URI: locationURI(f), URIBaseID: sarifRootID},
					Region:           sarifRegion{StartLine: 1, StartColumn: 1, EndLine: 1, EndColumn: 1},
				},
				Message: &sarifText{Text: f.PkgName + "@" + f.InstalledVersion},
			}},
		}
		if f.Suppressed != nil {
			res.Suppressions = []sarifSuppression{{
				Kind:          "external",
				Status:        "accepted",
				Justification: sarifJustification(f.Suppressed),
			}}
		}
		run.Results = append(run.Results, res)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sarifLog{Version: sarifVersion, Schema: sarifSchema, Runs: []sarifRun{run}}); err != nil {
		return fmt.Errorf("writing sarif report: %w", err)
	}
	return nil
}

func sarifRuleFor(f Finding) sarifRule {
	title := f.Title
	if title == "" {
		title = f.ID
	}
	name := "LanguageSpecificPackageVulnerability"
	if osPackageDB(f.PkgType) != "" {
		name = "OsPackageVulnerability"
	}
	help := fmt.Sprintf("Vulnerability %s\nSeverity: %s\nPackage: %s\nFixed Version: %s\nLink: %s\n%s",
		f.ID, f.Severity, f.PkgName, dash(f.FixedVersion), dash(f.PrimaryURL), title)
	md := fmt.Sprintf("**Vulnerability %s**\n| Severity | Package | Fixed Version | Link |\n| --- | --- | --- | --- |\n| %s | %s | %s | %s |\n\n%s",
		f.ID, f.Severity, f.PkgName, dash(f.FixedVersion), mdLink(f.PrimaryURL, f.ID), title)
	return sarifRule{
		ID:                   f.ID,
		Name:                 name,
		ShortDescription:     sarifText{Text: title},
		FullDescription:      sarifText{Text: title},
		HelpURI:              f.PrimaryURL,
		Help:                 sarifText{Text: help, Markdown: md},
		DefaultConfiguration: sarifConfig{Level: SARIFLevel(f.Severity)},
		Properties: map[string]any{
			"security-severity": SecuritySeverity(f.Severity),
			"precision":         "very-high",
			"tags":              []string{"vulnerability", "security", string(f.Severity)},
		},
	}
}

func mdLink(url, text string) string {
	if url == "" {
		return "-"
	}
	return "[" + text + "](" + url + ")"
}

func resultMessage(f Finding) string {
	return fmt.Sprintf("Package: %s\nInstalled Version: %s\nVulnerability: %s\nSeverity: %s\nFixed Version: %s\nPlatforms: %s\nLink: %s",
		f.PkgName, f.InstalledVersion, f.ID, f.Severity, dash(f.FixedVersion),
		strings.Join(f.Platforms, ", "), dash(f.PrimaryURL))
}

// locationURI is the file in the image that carries the vulnerable package,
// relative to the image root.
func locationURI(f Finding) string {
	if p := strings.TrimPrefix(f.PkgPath, "/"); p != "" {
		return p
	}
	if db := osPackageDB(f.PkgType); db != "" {
		return db
	}
	return "image"
}

// osPackageDB is the package database of an OS package type, or "".
func osPackageDB(pkgType string) string {
	switch pkgType {
	case "debian", "ubuntu":
		return "var/lib/dpkg/status"
	case "alpine", "wolfi", "chainguard", "minimos":
		return "lib/apk/db/installed"
	case "redhat", "centos", "rocky", "alma", "fedora", "amazon", "oracle",
		"photon", "suse linux enterprise server", "opensuse.leap", "opensuse.tumbleweed",
		"cbl-mariner", "azurelinux", "echo":
		return "var/lib/rpm/Packages"
	}
	return ""
}

// sarifJustification is a suppression's justification: the ignore rule and
// its statement, or the VEX status and justification and the document.
func sarifJustification(s *Suppression) string {
	if s.Kind == SuppressedByVEX {
		return SuppressionText(s)
	}
	return strings.TrimSpace(s.Rule + ": " + s.Statement)
}
