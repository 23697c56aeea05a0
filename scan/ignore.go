package scan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/package-url/packageurl-go"
	"go.yaml.in/yaml/v3"
)

// IgnoreFile is a parsed ignore file in Trivy's .trivyignore.yaml format
// (or the plain .trivyignore format: one id per line, optional exp:DATE).
type IgnoreFile struct {
	// Path is the file the rules were read from, if any.
	Path string `yaml:"-"`
	// Vulnerabilities are the rules for vulnerability findings.
	Vulnerabilities []IgnoreRule `yaml:"vulnerabilities"`
	// Misconfigurations are parsed for compatibility with Trivy's format;
	// slipway reports no misconfigurations, so they never match.
	Misconfigurations []IgnoreRule `yaml:"misconfigurations"`
}

// IgnoreRule suppresses the findings of one vulnerability id, optionally
// narrowed to package paths and package URLs, until it expires.
type IgnoreRule struct {
	// ID is the vulnerability id (CVE-…, GHSA-…, GO-…).
	ID string `yaml:"id"`
	// Paths, when set, restrict the rule to findings whose package path
	// matches one of these doublestar patterns ("app/**", "usr/bin/*").
	Paths []string `yaml:"paths"`
	// PURLs, when set, restrict the rule to findings whose package URL
	// matches one of these: type, namespace and name must be equal; version,
	// subpath and qualifiers only when given.
	PURLs []string `yaml:"purls"`
	// ExpiredAt ends the rule: from this instant on it no longer suppresses.
	// Zero means the rule never expires.
	ExpiredAt time.Time `yaml:"expired_at"`
	// Statement says why the finding is accepted.
	Statement string `yaml:"statement"`

	purls []packageurl.PackageURL
}

// LoadIgnoreFile reads an ignore file: YAML (.trivyignore.yaml) when the
// name ends in .yaml or .yml, the plain .trivyignore format otherwise.
func LoadIgnoreFile(path string) (*IgnoreFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading ignore file: %w", err)
	}
	var f *IgnoreFile
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		f, err = ParseIgnoreFile(b)
	default:
		f, err = parsePlainIgnore(b)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing ignore file %s: %w", path, err)
	}
	f.Path = path
	return f, nil
}

// ParseIgnoreFile parses the YAML form of an ignore file
// (vulnerabilities/misconfigurations sections of id, paths, purls,
// expired_at, statement). Unknown fields are rejected so that a typo does
// not silently widen or drop a rule.
func ParseIgnoreFile(data []byte) (*IgnoreFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// Trivy also accepts secrets and licenses sections; slipway reports
	// neither, but files written for Trivy must still load.
	var raw struct {
		IgnoreFile `yaml:",inline"`
		Secrets    []IgnoreRule `yaml:"secrets"`
		Licenses   []IgnoreRule `yaml:"licenses"`
	}
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decoding yaml: %w", err)
	}
	f := raw.IgnoreFile
	for _, rules := range [][]IgnoreRule{f.Vulnerabilities, f.Misconfigurations} {
		for i := range rules {
			if err := rules[i].compile(); err != nil {
				return nil, err
			}
		}
	}
	return &f, nil
}

func parsePlainIgnore(data []byte) (*IgnoreFile, error) {
	var f IgnoreFile
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		r := IgnoreRule{ID: fields[0]}
		for _, fl := range fields[1:] {
			if d, ok := strings.CutPrefix(fl, "exp:"); ok {
				t, err := time.Parse(time.DateOnly, d)
				if err != nil {
					return nil, fmt.Errorf("line %d: expiry date: %w", n, err)
				}
				r.ExpiredAt = t
			}
		}
		f.Vulnerabilities = append(f.Vulnerabilities, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (r *IgnoreRule) compile() error {
	if r.ID == "" {
		return fmt.Errorf("ignore rule without id")
	}
	for _, p := range r.Paths {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("rule %s: invalid path pattern %q", r.ID, p)
		}
	}
	r.purls = r.purls[:0]
	for _, s := range r.PURLs {
		p, err := packageurl.FromString(s)
		if err != nil {
			return fmt.Errorf("rule %s: purl %q: %w", r.ID, s, err)
		}
		r.purls = append(r.purls, p)
	}
	return nil
}

// Active reports whether the rule still suppresses at now.
func (r *IgnoreRule) Active(now time.Time) bool {
	return r.ExpiredAt.IsZero() || now.Before(r.ExpiredAt)
}

// Matches reports whether the rule applies to f, ignoring expiry.
func (r *IgnoreRule) Matches(f *Finding) bool {
	if r.ID != f.ID {
		return false
	}
	if len(r.Paths) > 0 && !slices.ContainsFunc(append([]string{f.PkgPath}, f.PkgPaths...), func(p string) bool {
		return matchAnyPath(r.Paths, p)
	}) {
		return false
	}
	if len(r.PURLs) > 0 {
		if len(r.purls) != len(r.PURLs) {
			// Built by hand rather than parsed: compile on first use.
			if err := r.compile(); err != nil {
				return false
			}
		}
		// Unlike Trivy, a finding without a package URL does not match a
		// rule restricted to package URLs: the narrower reading fails closed.
		target, err := packageurl.FromString(f.PURL)
		if f.PURL == "" || err != nil || !matchAnyPURL(r.purls, target) {
			return false
		}
	}
	return true
}

func matchAnyPath(patterns []string, path string) bool {
	if path == "" {
		return false
	}
	path = strings.TrimPrefix(filepath.ToSlash(path), "/")
	for _, p := range patterns {
		if ok, _ := doublestar.Match(strings.TrimPrefix(p, "/"), path); ok {
			return true
		}
	}
	return false
}

func matchAnyPURL(rules []packageurl.PackageURL, t packageurl.PackageURL) bool {
	for _, p := range rules {
		if p.Type != t.Type || p.Namespace != t.Namespace || p.Name != t.Name {
			continue
		}
		if p.Version != "" && p.Version != t.Version {
			continue
		}
		if p.Subpath != "" && p.Subpath != t.Subpath {
			continue
		}
		tq := t.Qualifiers.Map()
		ok := true
		for k, v := range p.Qualifiers.Map() {
			if tq[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Apply marks every finding of r that an active vulnerability rule matches
// as suppressed, and clears the mark of every other finding, so applying at
// a later time lifts suppressions whose rules expired meanwhile. A VEX
// suppression (Kind SuppressedByVEX, set by the scanner) is neither
// cleared nor replaced. Findings stay in the report. It returns the number
// of findings its rules suppressed.
func (f *IgnoreFile) Apply(r *Report, now time.Time) int {
	n := 0
	for i := range r.Findings {
		fd := &r.Findings[i]
		if fd.Suppressed != nil && fd.Suppressed.Kind == SuppressedByVEX {
			continue
		}
		fd.Suppressed = nil
		if f == nil {
			continue
		}
		for j := range f.Vulnerabilities {
			rule := &f.Vulnerabilities[j]
			if !rule.Active(now) || !rule.Matches(fd) {
				continue
			}
			name := rule.ID
			if f.Path != "" {
				name = f.Path + ":" + rule.ID
			}
			fd.Suppressed = &Suppression{Rule: name, Statement: rule.Statement, ExpiresAt: rule.ExpiredAt}
			n++
			break
		}
	}
	return n
}
