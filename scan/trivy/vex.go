package trivy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"slices"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"

	"github.com/slipway-build/slipway/scan"
)

// VEXError is the error New returns for a VEX document (WithVEX) that
// cannot be read or is not a VEX document Trivy can apply to an image.
type VEXError struct {
	// Index is the document's position in WithVEX's list.
	Index int
	// Path is the file.
	Path string
	// Err says what is wrong with it.
	Err error
}

// Error names the file.
func (e *VEXError) Error() string { return fmt.Sprintf("vex document %s: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *VEXError) Unwrap() error { return e.Err }

// WithVEX applies VEX documents (OpenVEX, CSAF, CycloneDX VEX), with the
// formats and matching of Trivy's --vex (its own pkg/vex): a finding every
// occurrence of which (each platform, each file) a not_affected or fixed
// statement covers is marked suppressed (scan.SuppressedByVEX) with the
// statement's status and justification; it stays in the report and no
// longer counts for the gate. A statement matches by vulnerability id and
// package URL (the package's own, or as a subcomponent of a product above
// it, such as the Go binary's main module), so a statement about another
// product suppresses nothing. CycloneDX VEX is matched by the reference of
// its BOM-links (see vexmatch.go). Every file is read and decoded by
// New: one that cannot be is a *VEXError naming it. Default: none.
func WithVEX(paths ...string) Option {
	return func(o *options) error {
		o.vex = append(o.vex, paths...)
		return nil
	}
}

// vexSet is the VEX documents a scanner applies.
type vexSet struct {
	docs []vexMatcher
	// identity is a digest of every document's bytes, in order.
	identity string
}

// loadVEX reads and decodes each document, once, and digests their
// contents.
func loadVEX(paths []string) (*vexSet, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	h := sha256.New()
	vs := &vexSet{}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: err}
		}
		d, err := decodeVEXDocument(b, p)
		if err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: err}
		}
		vs.docs = append(vs.docs, d)
		fmt.Fprintf(h, "%d:%s\x00", len(b), p)
		h.Write(b)
	}
	vs.identity = "vex sha256:" + hex.EncodeToString(h.Sum(nil))
	return vs, nil
}

// ConfigIdentity implements scan.ConfigIdentifier: the VEX documents'
// digest, so a cached report is not reused under other statements.
func (s *Scanner) ConfigIdentity() string {
	if s.vex == nil {
		return ""
	}
	return s.vex.identity
}

var _ scan.ConfigIdentifier = (*Scanner)(nil)

// vexKey identifies one vulnerable package version, as findings merge them.
type vexKey = findingKey

// vexOutcome records, per finding, its occurrences (platform and Trivy
// result target) and which of them a VEX statement covers.
type vexOutcome struct {
	total    map[vexKey]map[string]bool
	modified map[vexKey]map[string]vexMark
}

// vexMark is the statement that covered one occurrence and its document.
type vexMark struct {
	m    types.ModifiedFinding
	path string
}

func newVEXOutcome() *vexOutcome {
	return &vexOutcome{total: map[vexKey]map[string]bool{}, modified: map[vexKey]map[string]vexMark{}}
}

// filter applies the VEX documents to one platform's results as Trivy's
// CLI applies its --vex files (pkg/vex.Filter, see filterVEX) to the
// platform's report, packages included, on copies: the results themselves
// keep every vulnerability.
func (v *vexSet) filter(platform, digest string, osInfo ftypes.OS, results types.Results, out *vexOutcome) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("applying VEX on %s: panic: %v\n%s", platform, r, debug.Stack())
		}
	}()
	rep := &types.Report{
		SchemaVersion: reportSchemaVersion,
		ArtifactName:  digest,
		ArtifactType:  ftypes.TypeContainerImage,
		Results:       make(types.Results, len(results)),
	}
	if osInfo.Detected() {
		o := osInfo
		rep.Metadata.OS = &o
	}
	for i, r := range results {
		for _, dv := range r.Vulnerabilities {
			k := vexKey{dv.VulnerabilityID, dv.PkgName, dv.InstalledVersion}
			if out.total[k] == nil {
				out.total[k] = map[string]bool{}
			}
			out.total[k][platform+"\x00"+r.Target] = true
		}
		r.Vulnerabilities = slices.Clone(r.Vulnerabilities)
		r.Packages = slices.Clone(r.Packages)
		r.ModifiedFindings = nil
		rep.Results[i] = r
	}
	if err := filterVEX(rep, v.docs); err != nil {
		return fmt.Errorf("applying VEX on %s: %w", platform, err)
	}
	for _, r := range rep.Results {
		for _, m := range r.ModifiedFindings {
			dv, ok := m.Finding.(types.DetectedVulnerability)
			if !ok {
				continue
			}
			k := vexKey{dv.VulnerabilityID, dv.PkgName, dv.InstalledVersion}
			occ := platform + "\x00" + r.Target
			if out.modified[k] == nil {
				out.modified[k] = map[string]vexMark{}
			}
			if _, seen := out.modified[k][occ]; !seen {
				out.modified[k][occ] = vexMark{m: m, path: m.Source}
			}
		}
	}
	return nil
}

// apply marks the findings of r every occurrence of which (each platform,
// each file) a not_affected or fixed statement covered; any occurrence
// left affected keeps the finding counting (fail closed).
func (o *vexOutcome) apply(r *scan.Report) {
	for i := range r.Findings {
		f := &r.Findings[i]
		k := vexKey{f.ID, f.PkgName, f.InstalledVersion}
		occs := o.total[k]
		if len(occs) == 0 {
			continue
		}
		var first *vexMark
		for _, occ := range slices.Sorted(maps.Keys(occs)) {
			mk, ok := o.modified[k][occ]
			if !ok || mk.m.Status != types.FindingStatusNotAffected && mk.m.Status != types.FindingStatusFixed {
				first = nil
				break
			}
			if first == nil {
				first = &mk
			}
		}
		if first == nil {
			continue
		}
		stmt := string(first.m.Status)
		if first.m.Statement != "" {
			stmt += ": " + first.m.Statement
		}
		f.Suppressed = &scan.Suppression{
			Rule:          "vex:" + first.path,
			Statement:     stmt,
			Kind:          scan.SuppressedByVEX,
			Status:        string(first.m.Status),
			Justification: first.m.Statement,
		}
	}
}
