package scan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy decides which findings fail the gate.
type Policy struct {
	// Severities fail the gate; empty means DefaultSeverities (HIGH, CRITICAL).
	Severities []Severity
	// IgnoreUnfixed leaves out findings that have no fixed version.
	IgnoreUnfixed bool
	// Ignore, when set, suppresses the findings its active rules match.
	Ignore *IgnoreFile
	// Now is the instant ignore rules expire against; zero means time.Now().
	Now time.Time
	// AllowUnjudged lists the Unjudged reasons that do not fail the gate
	// (scan.allow_unjudged). Default: none; every Unjudged fails it.
	AllowUnjudged []string
}

// CannotJudgeError is the error Gate returns when the report holds
// Unjudged items whose reason the policy does not allow. It is an
// operational failure (exit 1), not a policy violation.
type CannotJudgeError struct {
	Items []Unjudged
}

// Error starts with "cannot judge: " and names each item and how to accept
// it.
func (e *CannotJudgeError) Error() string {
	var parts []string
	var reasons []string
	for _, u := range e.Items {
		p := u.Detail
		if u.Platform != "" {
			p = u.Platform + ": " + p
		}
		parts = append(parts, p+" ["+u.Reason+"]")
		if !slices.Contains(reasons, u.Reason) {
			reasons = append(reasons, u.Reason)
		}
	}
	return fmt.Sprintf("cannot judge: %s; fix the image, or accept this by adding %s to scan.allow_unjudged",
		strings.Join(parts, "; "), strings.Join(reasons, ", "))
}

// PolicyViolation is the error Gate returns when findings fail the policy.
type PolicyViolation struct {
	// Counts holds the number of failing findings per severity.
	Counts map[Severity]int
	// Findings are the failing findings, in report order.
	Findings []Finding
}

// Error summarises the violation, worst severity first.
func (v *PolicyViolation) Error() string {
	var parts []string
	for _, s := range SeveritiesDescending {
		if n := v.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	ids := make([]string, 0, 5)
	for i, f := range v.Findings {
		if i == 5 {
			ids = append(ids, "…")
			break
		}
		ids = append(ids, f.ID+" ("+f.PkgName+" "+f.InstalledVersion+")")
	}
	return fmt.Sprintf("vulnerability policy violated: %d findings (%s): %s",
		len(v.Findings), strings.Join(parts, ", "), strings.Join(ids, ", "))
}

// Gate applies p to r and returns a *PolicyViolation listing the findings
// that fail it, a *CannotJudgeError listing what the scanner could not
// judge and p does not allow (joined with the violation if both), or nil.
// When p.Ignore is set, Gate first applies it to r (see IgnoreFile.Apply),
// so a report written afterwards shows which findings were suppressed and
// why. Every finding stays in r whatever its severity.
func Gate(r *Report, p Policy) error {
	if r == nil {
		return fmt.Errorf("gate: no report")
	}
	sevs := make([]Severity, 0, len(p.Severities))
	for _, s := range p.Severities {
		sev, err := ParseSeverity(string(s))
		if err != nil {
			return fmt.Errorf("gate: %w", err)
		}
		sevs = append(sevs, sev)
	}
	if len(sevs) == 0 {
		sevs = DefaultSeverities
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	if p.Ignore != nil {
		p.Ignore.Apply(r, now)
	}
	var cj *CannotJudgeError
	for _, u := range r.Unjudged {
		if !slices.Contains(p.AllowUnjudged, u.Reason) {
			if cj == nil {
				cj = &CannotJudgeError{}
			}
			cj.Items = append(cj.Items, u)
		}
	}
	v := &PolicyViolation{Counts: make(map[Severity]int)}
	for _, f := range r.Findings {
		switch {
		case f.Suppressed != nil:
		case p.IgnoreUnfixed && f.FixedVersion == "":
		case !slices.Contains(sevs, f.Severity):
		default:
			v.Counts[f.Severity]++
			v.Findings = append(v.Findings, f)
		}
	}
	switch {
	case cj != nil && len(v.Findings) > 0:
		return errors.Join(cj, v)
	case cj != nil:
		return cj
	case len(v.Findings) > 0:
		return v
	}
	return nil
}
