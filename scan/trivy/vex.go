package trivy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"slices"

	cdx "github.com/CycloneDX/cyclonedx-go"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	tsbom "github.com/aquasecurity/trivy/pkg/sbom"
	"github.com/aquasecurity/trivy/pkg/sbom/core"
	"github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
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

// WithVEX applies VEX documents (OpenVEX, CSAF, CycloneDX VEX), with the
// formats and matching of Trivy's --vex (its own pkg/vex): a finding every
// occurrence of which (each platform, each file) a not_affected or fixed
// statement covers is marked suppressed (scan.SuppressedByVEX) with the
// statement's status and justification; it stays in the report and no
// longer counts for the gate. A statement matches by vulnerability id and
// package URL (the package's own, or as a subcomponent of a product above
// it, such as the Go binary's main module), so a statement about another
// product suppresses nothing. CycloneDX VEX is matched by the reference of
// its BOM-links (see loadCycloneDXVEX). Every file is read and decoded by
// New: one that cannot be is a *VEXError naming it. Default: none.
func WithVEX(paths ...string) Option {
	return func(o *options) error {
		o.vex = append(o.vex, paths...)
		return nil
	}
}

// vexSet is the VEX documents a scanner applies.
type vexSet struct {
	// files are the OpenVEX and CSAF documents, applied together as
	// Trivy's CLI applies its --vex sources.
	files []string
	// cdx are the CycloneDX VEX documents.
	cdx []cdxVEX
	// identity is a digest of every document's bytes, in order.
	identity string
}

// cdxVEX is a CycloneDX VEX document and the SBOMs (serial number and
// version) its BOM-links name.
type cdxVEX struct {
	path  string
	sboms []cdxSBOM
}

type cdxSBOM struct {
	serial  string
	version int
}

// loadVEX checks that each path holds a VEX document Trivy applies, and
// digests their contents.
func loadVEX(paths []string) (*vexSet, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	h := sha256.New()
	vs := &vexSet{}
	probe := &types.Report{ArtifactType: ftypes.TypeContainerImage}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: err}
		}
		fmt.Fprintf(h, "%d:%s\x00", len(b), p)
		h.Write(b)
		if isCDX, _ := tsbom.IsCycloneDXJSON(bytes.NewReader(b)); isCDX {
			c, err := loadCycloneDXVEX(p, b)
			if err != nil {
				return nil, &VEXError{Index: i, Path: p, Err: err}
			}
			vs.cdx = append(vs.cdx, c)
			continue
		}
		if _, err := vex.NewDocument(p, probe); err != nil {
			return nil, &VEXError{Index: i, Path: p, Err: fmt.Errorf("not a VEX document Trivy can read (OpenVEX, CSAF, CycloneDX VEX): %w", err)}
		}
		vs.files = append(vs.files, p)
	}
	vs.identity = "vex sha256:" + hex.EncodeToString(h.Sum(nil))
	return vs, nil
}

// loadCycloneDXVEX reads a CycloneDX VEX document. Trivy applies one only
// to the CycloneDX SBOM its BOM-links (urn:cdx:SERIAL/VERSION#REF) name,
// matching REF against the package's bom-ref or package URL. slipway
// scans the image, not that SBOM, so it matches REF (in slipway's and
// Trivy's CycloneDX SBOMs a package's bom-ref is its package URL) against
// the scanned packages, whichever SBOM the link names: Trivy's own
// matcher, run once per SBOM the document names.
func loadCycloneDXVEX(path string, b []byte) (cdxVEX, error) {
	bom, err := cyclonedx.DecodeJSON(bytes.NewReader(b))
	if err != nil {
		return cdxVEX{}, err
	}
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) == 0 {
		return cdxVEX{}, errors.New("a CycloneDX document without vulnerabilities is not a VEX document")
	}
	c := cdxVEX{path: path}
	for _, v := range *bom.Vulnerabilities {
		if v.Affects == nil {
			continue
		}
		for _, a := range *v.Affects {
			link, err := cdx.ParseBOMLink(a.Ref)
			if err != nil {
				return cdxVEX{}, fmt.Errorf("vulnerability %s: affects ref %q is not a BOM-link (urn:cdx:SERIAL/VERSION#REF), the only form Trivy matches", v.ID, a.Ref)
			}
			s := cdxSBOM{serial: link.SerialNumber(), version: link.Version()}
			if !slices.Contains(c.sboms, s) {
				c.sboms = append(c.sboms, s)
			}
		}
	}
	if len(c.sboms) == 0 {
		return cdxVEX{}, errors.New("no vulnerability names a component it affects")
	}
	probe := &types.Report{ArtifactType: ftypes.TypeCycloneDX, BOM: core.NewBOM(core.Options{})}
	if _, err := vex.NewDocument(path, probe); err != nil {
		return cdxVEX{}, err
	}
	return c, nil
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
// CLI does (pkg/vex.Filter over the platform's report, packages included),
// on copies: the results themselves keep every vulnerability.
func (v *vexSet) filter(ctx context.Context, platform, digest string, osInfo ftypes.OS, results types.Results, out *vexOutcome) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("applying VEX on %s: trivy panicked: %v\n%s", platform, r, debug.Stack())
		}
	}()
	for _, r := range results {
		for _, dv := range r.Vulnerabilities {
			k := vexKey{dv.VulnerabilityID, dv.PkgName, dv.InstalledVersion}
			if out.total[k] == nil {
				out.total[k] = map[string]bool{}
			}
			out.total[k][platform+"\x00"+r.Target] = true
		}
	}
	report := func(typ ftypes.ArtifactType, bom *core.BOM) *types.Report {
		rep := &types.Report{
			SchemaVersion: reportSchemaVersion,
			ArtifactName:  digest,
			ArtifactType:  typ,
			Results:       make(types.Results, len(results)),
			BOM:           bom,
		}
		if osInfo.Detected() {
			o := osInfo
			rep.Metadata.OS = &o
		}
		for i, r := range results {
			r.Vulnerabilities = slices.Clone(r.Vulnerabilities)
			r.Packages = slices.Clone(r.Packages)
			r.ModifiedFindings = nil
			rep.Results[i] = r
		}
		return rep
	}
	if len(v.files) > 0 {
		srcs := make([]vex.Source, len(v.files))
		for i, p := range v.files {
			srcs[i] = vex.Source{Type: vex.TypeFile, FilePath: p}
		}
		if err := applyVEX(ctx, platform, report(ftypes.TypeContainerImage, nil), srcs, "", out); err != nil {
			return err
		}
	}
	for _, c := range v.cdx {
		for _, s := range c.sboms {
			bom := core.NewBOM(core.Options{})
			bom.SerialNumber, bom.Version = s.serial, s.version
			if err := applyVEX(ctx, platform, report(ftypes.TypeCycloneDX, bom), []vex.Source{{Type: vex.TypeFile, FilePath: c.path}}, c.path, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyVEX runs Trivy's VEX filter over rep and records what it marked.
// path names the document when Trivy's ModifiedFinding does not (it
// names CycloneDX VEX "CycloneDX VEX").
func applyVEX(ctx context.Context, platform string, rep *types.Report, srcs []vex.Source, path string, out *vexOutcome) error {
	if err := vex.Filter(ctx, rep, vex.Options{Sources: srcs}); err != nil {
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
				out.modified[k][occ] = vexMark{m: m, path: cmp.Or(path, m.Source)}
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
