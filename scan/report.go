package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Format names a report encoding.
type Format string

// Report formats.
const (
	FormatTable Format = "table" // human table (WriteTable)
	FormatJSON  Format = "json"  // the Report as JSON (WriteJSON)
	FormatSARIF Format = "sarif" // SARIF 2.1.0 (WriteSARIF)
	// FormatSPDXJSON and FormatCycloneDX are SBOMs of the scanned image
	// (SPDX 2.3 JSON, CycloneDX JSON), made by the scanner (Report.MakeSBOM):
	// the same documents as the sbom attestation's.
	FormatSPDXJSON  Format = "spdx-json"
	FormatCycloneDX Format = "cyclonedx"
)

// Formats lists every report format, as ParseFormat accepts them.
func Formats() []Format {
	return []Format{FormatTable, FormatJSON, FormatSARIF, FormatSPDXJSON, FormatCycloneDX}
}

// IsSBOM reports whether f is an SBOM format (made by Report.MakeSBOM).
func (f Format) IsSBOM() bool { return f == FormatSPDXJSON || f == FormatCycloneDX }

// ParseFormat parses a report format name.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	for _, k := range Formats() {
		if f == k {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown report format %q (want table, json, sarif, spdx-json or cyclonedx)", s)
}

// ErrNoSBOM is returned by Write for an SBOM format when the report's
// scanner cannot make SBOMs (Report.MakeSBOM is nil).
var ErrNoSBOM = errors.New("the scanner of this report makes no SBOM")

// Write encodes r to w in format f.
func Write(w io.Writer, r *Report, f Format) error {
	return WriteContext(context.Background(), w, r, f)
}

// WriteContext encodes r to w in format f; ctx bounds making an SBOM.
func WriteContext(ctx context.Context, w io.Writer, r *Report, f Format) error {
	switch f {
	case FormatTable:
		return WriteTable(w, r)
	case FormatJSON:
		return WriteJSON(w, r)
	case FormatSARIF:
		return WriteSARIF(w, r)
	case FormatSPDXJSON, FormatCycloneDX:
		if r.MakeSBOM == nil {
			return fmt.Errorf("writing %s: %w", f, ErrNoSBOM)
		}
		doc, err := r.MakeSBOM(ctx, f)
		if err != nil {
			return fmt.Errorf("making %s sbom: %w", f, err)
		}
		if _, err := w.Write(doc); err != nil {
			return fmt.Errorf("writing %s sbom: %w", f, err)
		}
		return nil
	}
	return fmt.Errorf("unknown report format %q", f)
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("writing json report: %w", err)
	}
	return nil
}

const maxTitle = 60

// WriteTable writes a human-readable table of every finding (severity, id,
// package, installed, fixed, platforms, title) followed by a summary line.
// Suppressed findings are listed with their severity in parentheses.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SEVERITY\tID\tPACKAGE\tINSTALLED\tFIXED\tPLATFORMS\tTITLE\n")
	suppressed := 0
	for _, f := range r.Findings {
		sev := string(f.Severity)
		if f.Suppressed != nil {
			sev = "(" + sev + ")"
			suppressed++
		}
		pkg := f.PkgName
		if f.PkgPath != "" {
			pkg += " (" + f.PkgPath + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sev, f.ID, pkg, f.InstalledVersion,
			dash(f.FixedVersion), strings.Join(f.Platforms, ","), dash(truncate(f.Title, maxTitle)))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing table report: %w", err)
	}
	counts := r.Counts()
	var parts []string
	for _, s := range SeveritiesDescending {
		parts = append(parts, fmt.Sprintf("%s: %d", s, counts[s]))
	}
	_, err := fmt.Fprintf(w, "\nTotal: %d (%s), suppressed: %d; db updated %s\n",
		len(r.Findings)-suppressed, strings.Join(parts, ", "), suppressed,
		r.DB.UpdatedAt.UTC().Format("2006-01-02 15:04 MST"))
	if err != nil {
		return fmt.Errorf("writing table report: %w", err)
	}
	for _, f := range r.Findings {
		if f.Suppressed == nil {
			continue
		}
		if _, err := fmt.Fprintf(w, "Suppressed %s (%s %s): %s\n", f.ID, f.PkgName, f.InstalledVersion, SuppressionText(f.Suppressed)); err != nil {
			return fmt.Errorf("writing table report: %w", err)
		}
	}
	for _, u := range r.Unjudged {
		where := ""
		if u.Platform != "" {
			where = u.Platform + ": "
		}
		if _, err := fmt.Fprintf(w, "Not judged [%s]: %s%s\n", u.Reason, where, u.Detail); err != nil {
			return fmt.Errorf("writing table report: %w", err)
		}
	}
	return nil
}

// SuppressionText says why a finding is suppressed, in one line: for VEX
// "vex not_affected (vulnerable_code_not_in_execute_path) by FILE", for an
// ignore rule "RULE: STATEMENT" (and its expiry).
func SuppressionText(s *Suppression) string {
	if s.Kind == SuppressedByVEX {
		t := "vex " + s.Status
		if s.Justification != "" {
			t += " (" + s.Justification + ")"
		}
		return t + " by " + strings.TrimPrefix(s.Rule, "vex:")
	}
	t := s.Rule
	if s.Statement != "" {
		t += ": " + s.Statement
	}
	if !s.ExpiresAt.IsZero() {
		t += " (until " + s.ExpiresAt.UTC().Format("2006-01-02") + ")"
	}
	return t
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	rs := []rune(s)
	return string(rs[:n-1]) + "…"
}
