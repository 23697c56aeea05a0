package trivy

// The VEX matchers of Trivy v0.74.0's pkg/vex (Apache-2.0, © Aqua
// Security): its OpenVEX, CSAF and CycloneDX VEX documents and its filter
// (filterVulnerabilities, reachRoot), without the package itself. pkg/vex
// also holds Trivy's VEX repository and `--vex oci` sources, which link
// Trivy's registry client with the ECR, Azure and Google credential SDKs
// and go-getter with the S3 and GCS SDKs (internal/depcheck's
// TestBinaryLinks refuses them in slipway's binary); slipway reads VEX
// from files only. The documents are decoded by the same libraries Trivy
// uses (openvex/go-vex, gocsaf, CycloneDX through Trivy's decoder), and
// TestVEXMatchesTrivy checks that these matchers mark exactly the findings
// Trivy's own pkg/vex.Filter marks. The changes: a CSAF vulnerability
// without a CVE matches nothing (Trivy dereferences it), and a CycloneDX
// VEX BOM-link matches by its reference, whatever SBOM serial number it
// names (Trivy applies CycloneDX VEX only when scanning that SBOM).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/aquasecurity/trivy/pkg/purl"
	tsbom "github.com/aquasecurity/trivy/pkg/sbom"
	"github.com/aquasecurity/trivy/pkg/sbom/core"
	"github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
	sbomio "github.com/aquasecurity/trivy/pkg/sbom/io"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/gocsaf/csaf/v3/csaf"
	"github.com/google/uuid"
	openvex "github.com/openvex/go-vex/pkg/vex"
)

// vexMatcher is one VEX document: pkg/vex.VEX.
type vexMatcher interface {
	// NotAffected reports whether the document states vuln does not
	// affect product (with subComponent beneath it, or nil when product
	// is the vulnerable package itself), and how.
	NotAffected(vuln types.DetectedVulnerability, product, subComponent *core.Component) (types.ModifiedFinding, bool)
}

// decodeVEXDocument decodes a VEX document as pkg/vex.decodeVEX does:
// CycloneDX JSON, else OpenVEX (an "@context"), else CSAF (a
// "vulnerabilities" list). source names it in the findings it marks.
func decodeVEXDocument(b []byte, source string) (vexMatcher, error) {
	r := bytes.NewReader(b)
	if ok, err := tsbom.IsCycloneDXJSON(r); err == nil && ok {
		bom, err := cyclonedx.DecodeJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("decoding CycloneDX VEX: %w", err)
		}
		return newCycloneDXVEX(bom, source)
	}
	var ov openvex.VEX
	errOV := json.Unmarshal(b, &ov)
	if errOV == nil && ov.Context != "" {
		return &openVEXDoc{vex: ov, source: source}, nil
	}
	var adv csaf.Advisory
	errCSAF := json.Unmarshal(b, &adv)
	if errCSAF == nil && adv.Vulnerabilities != nil {
		return &csafDoc{advisory: adv, source: source}, nil
	}
	if err := errors.Join(errOV, errCSAF); err != nil {
		return nil, fmt.Errorf("not a VEX document (OpenVEX, CSAF, CycloneDX VEX): %w", err)
	}
	return nil, errors.New("not a VEX document: neither OpenVEX (no @context), CSAF (no vulnerabilities) nor CycloneDX (no bomFormat)")
}

// openVEXDoc is pkg/vex.OpenVEX.
type openVEXDoc struct {
	vex    openvex.VEX
	source string
}

// NotAffected takes the latest matching statement, as a sequence of
// statements can be overridden by a newer one.
func (v *openVEXDoc) NotAffected(vuln types.DetectedVulnerability, product, subComponent *core.Component) (types.ModifiedFinding, bool) {
	if product == nil || product.PkgIdentifier.PURL == nil {
		return types.ModifiedFinding{}, false
	}
	var sub string
	if subComponent != nil && subComponent.PkgIdentifier.PURL != nil {
		sub = subComponent.PkgIdentifier.PURL.String()
	}
	stmts := v.vex.Matches(vuln.VulnerabilityID, product.PkgIdentifier.PURL.String(), []string{sub})
	if len(stmts) == 0 {
		return types.ModifiedFinding{}, false
	}
	stmt := stmts[len(stmts)-1]
	switch stmt.Status {
	case openvex.StatusNotAffected:
		return types.NewModifiedFinding(vuln, types.FindingStatusNotAffected, string(stmt.Justification), v.source), true
	case openvex.StatusFixed:
		return types.NewModifiedFinding(vuln, types.FindingStatusFixed, string(stmt.Justification), v.source), true
	}
	return types.ModifiedFinding{}, false
}

// csafDoc is pkg/vex.CSAF.
type csafDoc struct {
	advisory csaf.Advisory
	source   string
}

func (v *csafDoc) NotAffected(vuln types.DetectedVulnerability, product, subProduct *core.Component) (types.ModifiedFinding, bool) {
	var found *csaf.Vulnerability
	for _, item := range v.advisory.Vulnerabilities {
		if item != nil && item.CVE != nil && string(*item.CVE) == vuln.VulnerabilityID {
			found = item
			break
		}
	}
	if found == nil {
		return types.ModifiedFinding{}, false
	}
	status := v.match(found, product, subProduct)
	if status == "" {
		return types.ModifiedFinding{}, false
	}
	return types.NewModifiedFinding(vuln, status, csafStatement(found), v.source), true
}

func (v *csafDoc) match(vuln *csaf.Vulnerability, product, subProduct *core.Component) types.FindingStatus {
	if product == nil || product.PkgIdentifier.PURL == nil || vuln.ProductStatus == nil {
		return ""
	}
	// Trivy ranges over a map of the two; not_affected first here, the
	// same when a product is in only one of the lists, as it must be.
	for _, s := range []struct {
		status   types.FindingStatus
		products *csaf.Products
	}{
		{types.FindingStatusNotAffected, vuln.ProductStatus.KnownNotAffected},
		{types.FindingStatusFixed, vuln.ProductStatus.Fixed},
	} {
		if s.products == nil {
			continue
		}
		for _, p := range *s.products {
			if p == nil {
				continue
			}
			if v.matchProduct(*p, product) || v.matchRelationship(*p, product, subProduct) {
				return s.status
			}
		}
	}
	return ""
}

func (v *csafDoc) matchProduct(id csaf.ProductID, product *core.Component) bool {
	for _, p := range v.productPURLs(id) {
		if p.Match(product.PkgIdentifier.PURL) {
			return true
		}
	}
	return false
}

// matchRelationship: product is the relationship's product (relates to)
// and subProduct one of its sub-products (default_component_of,
// installed_on, installed_with).
func (v *csafDoc) matchRelationship(fullProductID csaf.ProductID, product, subProduct *core.Component) bool {
	if v.advisory.ProductTree == nil || v.advisory.ProductTree.RelationShips == nil || subProduct == nil {
		return false
	}
	for _, rel := range *v.advisory.ProductTree.RelationShips {
		if rel == nil || rel.FullProductName == nil || rel.FullProductName.ProductID == nil ||
			*rel.FullProductName.ProductID != fullProductID || rel.Category == nil {
			continue
		}
		switch *rel.Category {
		case csaf.CSAFRelationshipCategoryDefaultComponentOf, csaf.CSAFRelationshipCategoryInstalledOn,
			csaf.CSAFRelationshipCategoryInstalledWith:
		default:
			continue
		}
		if rel.RelatesToProductReference == nil || rel.ProductReference == nil {
			continue
		}
		for _, p := range v.productPURLs(*rel.RelatesToProductReference) {
			if !p.Match(product.PkgIdentifier.PURL) {
				continue
			}
			for _, sp := range v.productPURLs(*rel.ProductReference) {
				if sp.Match(subProduct.PkgIdentifier.PURL) {
					return true
				}
			}
		}
	}
	return false
}

// productPURLs are the package URLs of a product's identification helpers.
func (v *csafDoc) productPURLs(id csaf.ProductID) []*purl.PackageURL {
	if v.advisory.ProductTree == nil {
		return nil
	}
	var out []*purl.PackageURL
	for _, h := range v.advisory.ProductTree.CollectProductIdentificationHelpers(id) {
		if h == nil || h.PURL == nil {
			continue
		}
		if p, err := purl.FromString(string(*h.PURL)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// csafStatement is the details of the vulnerability's impact threat.
func csafStatement(vuln *csaf.Vulnerability) string {
	for _, t := range vuln.Threats {
		if t != nil && t.Category != nil && *t.Category == csaf.CSAFThreatCategoryImpact && t.Details != nil {
			return *t.Details
		}
	}
	return ""
}

// cdxVEXDoc is pkg/vex.CycloneDX, matching BOM-links by reference.
type cdxVEXDoc struct {
	statements map[string]cdxStatement
	source     string
}

type cdxStatement struct {
	refs          []string // the references of the BOM-links the statement affects
	status        types.FindingStatus
	justification string
}

// newCycloneDXVEX reads the statements of a CycloneDX VEX document. Every
// affects ref must be a BOM-link (urn:cdx:SERIAL/VERSION#REF), the only
// form Trivy matches; anything else is an error rather than a statement
// that silently never applies.
func newCycloneDXVEX(bom *cdx.BOM, source string) (*cdxVEXDoc, error) {
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) == 0 {
		return nil, errors.New("a CycloneDX document without vulnerabilities is not a VEX document")
	}
	d := &cdxVEXDoc{statements: map[string]cdxStatement{}, source: source}
	for _, vuln := range *bom.Vulnerabilities {
		st := cdxStatement{}
		if vuln.Analysis != nil {
			st.status = cdxStatus(vuln.Analysis.State)
			st.justification = string(vuln.Analysis.Justification)
		}
		if vuln.Affects != nil {
			for _, a := range *vuln.Affects {
				link, err := cdx.ParseBOMLink(a.Ref)
				if err != nil {
					return nil, fmt.Errorf("vulnerability %s: affects ref %q is not a BOM-link (urn:cdx:SERIAL/VERSION#REF), the only form Trivy matches", vuln.ID, a.Ref)
				}
				st.refs = append(st.refs, link.Reference())
			}
		}
		d.statements[vuln.ID] = st // the last statement of an id wins, as in Trivy
	}
	return d, nil
}

func (v *cdxVEXDoc) NotAffected(vuln types.DetectedVulnerability, product, _ *core.Component) (types.ModifiedFinding, bool) {
	st, ok := v.statements[vuln.VulnerabilityID]
	if !ok || product == nil || st.status != types.FindingStatusNotAffected && st.status != types.FindingStatusFixed {
		return types.ModifiedFinding{}, false
	}
	for _, ref := range st.refs {
		if product.PkgIdentifier.Match(ref) {
			return types.NewModifiedFinding(vuln, st.status, st.justification, v.source), true
		}
	}
	return types.ModifiedFinding{}, false
}

func cdxStatus(s cdx.ImpactAnalysisState) types.FindingStatus {
	switch s {
	case cdx.IASResolved, cdx.IASResolvedWithPedigree:
		return types.FindingStatusFixed
	case cdx.IASExploitable:
		return types.FindingStatusAffected
	case cdx.IASInTriage:
		return types.FindingStatusUnderInvestigation
	case cdx.IASFalsePositive, cdx.IASNotAffected:
		return types.FindingStatusNotAffected
	}
	return types.FindingStatusUnknown
}

// filterVEX is pkg/vex.Filter over documents: each vulnerability of each
// result whose every path from its package up to the report's root a
// document states not affected (at the package itself, or at a component
// above it with the package beneath) moves to the result's
// ModifiedFindings. report must hold the results' packages.
func filterVEX(report *types.Report, docs []vexMatcher) error {
	bom, err := sbomio.NewEncoder(sbomio.WithParents(), sbomio.ForceRegenerate()).Encode(*report)
	if err != nil {
		return fmt.Errorf("encoding the SBOM to match VEX against: %w", err)
	}
	notAffected := func(vuln types.DetectedVulnerability, product, sub *core.Component) (types.ModifiedFinding, bool) {
		for _, d := range docs {
			if m, ok := d.NotAffected(vuln, product, sub); ok {
				return m, true
			}
		}
		return types.ModifiedFinding{}, false
	}
	components := map[string]*core.Component{}
	for _, c := range bom.Components() {
		components[c.PkgIdentifier.UID] = c
	}
	for i := range report.Results {
		res := &report.Results[i]
		var kept []types.DetectedVulnerability
		for _, vuln := range res.Vulnerabilities {
			c, ok := components[vuln.PkgIdentifier.UID]
			if !ok {
				kept = append(kept, vuln) // not in the tree: never suppressed
				continue
			}
			var modified types.ModifiedFinding
			fn := func(c, leaf *core.Component) bool {
				m, na := notAffected(vuln, c, leaf)
				if na {
					modified = m
				}
				return na
			}
			if reachRoot(c, bom.Components(), bom.Parents(), fn) {
				kept = append(kept, vuln)
				continue
			}
			res.ModifiedFindings = append(res.ModifiedFindings, modified)
		}
		res.Vulnerabilities = kept
	}
	return nil
}

// reachRoot is pkg/vex.reachRoot: whether some path leads from leaf to the
// root without a component notAffected stops.
func reachRoot(leaf *core.Component, components map[uuid.UUID]*core.Component, parents map[uuid.UUID][]uuid.UUID,
	notAffected func(c, leaf *core.Component) bool) bool {
	if notAffected(leaf, nil) {
		return false
	}
	var dfs func(c *core.Component, visited map[uuid.UUID]bool) bool
	dfs = func(c *core.Component, visited map[uuid.UUID]bool) bool {
		switch {
		case notAffected(c, leaf):
			return false
		case c.Root:
			return true
		}
		unvisited := false
		for _, p := range parents[c.ID()] {
			if !visited[p] {
				unvisited = true
			}
		}
		if !unvisited {
			// A component without a way up: the tree is broken; keep the
			// vulnerability rather than drop it (as Trivy does).
			return true
		}
		visited[c.ID()] = true
		for _, p := range parents[c.ID()] {
			if visited[p] {
				continue
			}
			next := make(map[uuid.UUID]bool, len(visited))
			for k := range visited {
				next[k] = true
			}
			if dfs(components[p], next) {
				return true
			}
		}
		return false
	}
	return dfs(leaf, map[uuid.UUID]bool{})
}
