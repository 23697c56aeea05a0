package trivy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vex"

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

// WithVEX applies VEX documents (OpenVEX, CSAF, CycloneDX VEX; the formats
// and matching of Trivy's --vex, with its own pkg/vex): a finding every
// occurrence of which a not_affected or fixed statement covers is marked
// suppressed (scan.SuppressedByVEX) with the statement's status and
// justification; it stays in the report and no longer counts for the gate.
// A statement matches by vulnerability id and package URL (the package's
// own, or as a subcomponent of the Go binary's main module), so a
// statement about another product suppresses nothing. Every file is read
// and decoded by New: one that cannot be is a *VEXError naming it.
// Default: none.
func WithVEX(paths ...string) Option {
	return func(o *options) error {
		o.vex = append(o.vex, paths...)
		return nil
	}
}

// vexSet is the VEX documents a scanner applies.
type vexSet struct {
	paths []string
	// identity is a digest of every document's bytes, in order.
	identity string
}

// loadVEX checks that each path holds a VEX document Trivy applies to an
// image scan, and digests their contents.
func loadVEX(paths []string) (*vexSet, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	h := sha256.New()
	probe := &types.Report{ArtifactType: ftypes.TypeContainerImage}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: err}
		}
		if _, err := vex.NewDocument(p, probe); err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: fmt.Errorf("not a VEX document Trivy can apply to an image (OpenVEX, CSAF): %w", err)}
		}
		fmt.Fprintf(h, "%d:%s\x00", len(b), p)
		h.Write(b)
	}
	return &vexSet{paths: paths, identity: "vex sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
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

// vexOutcome counts, per finding, its occurrences and those a VEX
// statement covers, across platforms.
type vexOutcome struct {
	total    map[vexKey]int
	modified map[vexKey]int
	first    map[vexKey]types.ModifiedFinding
}

func newVEXOutcome() *vexOutcome {
	return &vexOutcome{total: map[vexKey]int{}, modified: map[vexKey]int{}, first: map[vexKey]types.ModifiedFinding{}}
}

// filter applies the VEX documents to one platform's results, as Trivy's
// CLI does (pkg/vex.Filter over the platform's report, packages included),
// on a copy: the results themselves keep every vulnerability.
func (v *vexSet) filter(ctx context.Context, platform, digest string, osInfo ftypes.OS, results types.Results, out *vexOutcome) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("applying VEX on %s: trivy panicked: %v\n%s", platform, r, debug.Stack())
		}
	}()
	rep := types.Report{
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
		r.Vulnerabilities = append([]types.DetectedVulnerability(nil), r.Vulnerabilities...)
		r.Packages = append(ftypes.Packages(nil), r.Packages...)
		r.ModifiedFindings = nil
		rep.Results[i] = r
		for _, dv := range r.Vulnerabilities {
			out.total[vexKey{dv.VulnerabilityID, dv.PkgName, dv.InstalledVersion}]++
		}
	}
	srcs := make([]vex.Source, len(v.paths))
	for i, p := range v.paths {
		srcs[i] = vex.Source{Type: vex.TypeFile, FilePath: p}
	}
	if err := vex.Filter(ctx, &rep, vex.Options{Sources: srcs}); err != nil {
		return fmt.Errorf("applying VEX on %s: %w", platform, err)
	}
	for _, r := range rep.Results {
		for _, m := range r.ModifiedFindings {
			dv, ok := m.Finding.(types.DetectedVulnerability)
			if !ok {
				continue
			}
			k := vexKey{dv.VulnerabilityID, dv.PkgName, dv.InstalledVersion}
			out.modified[k]++
			if _, seen := out.first[k]; !seen {
				out.first[k] = m
			}
		}
	}
	return nil
}

// apply marks the findings of r whose every occurrence a not_affected or
// fixed statement covered; any occurrence left affected keeps the finding
// counting (fail closed).
func (o *vexOutcome) apply(r *scan.Report) {
	for i := range r.Findings {
		f := &r.Findings[i]
		k := vexKey{f.ID, f.PkgName, f.InstalledVersion}
		if o.total[k] == 0 || o.modified[k] < o.total[k] {
			continue
		}
		m := o.first[k]
		if m.Status != types.FindingStatusNotAffected && m.Status != types.FindingStatusFixed {
			continue
		}
		stmt := string(m.Status)
		if m.Statement != "" {
			stmt += ": " + m.Statement
		}
		f.Suppressed = &scan.Suppression{
			Rule:          "vex:" + m.Source,
			Statement:     stmt,
			Kind:          scan.SuppressedByVEX,
			Status:        string(m.Status),
			Justification: m.Statement,
		}
	}
}
