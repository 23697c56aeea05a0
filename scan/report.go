package scan

import (
	"encoding/json"
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
)

// ParseFormat parses a report format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatTable, FormatJSON, FormatSARIF:
		return f, nil
	}
	return "", fmt.Errorf("unknown report format %q (want table, json or sarif)", s)
}

// Write encodes r to w in format f.
func Write(w io.Writer, r *Report, f Format) error {
	switch f {
	case FormatTable:
		return WriteTable(w, r)
	case FormatJSON:
		return WriteJSON(w, r)
	case FormatSARIF:
		return WriteSARIF(w, r)
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
