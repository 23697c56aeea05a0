package trivy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/sbom/spdx"
	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/sign/vocab"
	tspdx "github.com/spdx/tools-golang/spdx"
	spdxcommon "github.com/spdx/tools-golang/spdx/v2/common"
)

// SBOM formats, as configuration names them.
const (
	FormatSPDXJSON  = vocab.SBOMSPDXJSON  // SPDX 2.3 JSON
	FormatCycloneDX = vocab.SBOMCycloneDX // CycloneDX JSON
)

// Where an SBOM records the platforms a package is in.
const (
	// PlatformsAnnotation is the key of the SPDX package annotation
	// (annotationType OTHER, comment "Platforms: linux/amd64, linux/arm64"),
	// in the "Key: Value" form Trivy writes and reads its own package
	// properties in.
	PlatformsAnnotation = "Platforms"
	// PlatformsProperty is the CycloneDX component property with the same
	// comma-separated list.
	PlatformsProperty = "slipway:platforms"
	// sbomAnnotator is the annotator of slipway's SPDX annotations.
	sbomAnnotator = "slipway"
)

// SBOMMakerVersion names what makes SBOMs, for caches of them: Trivy's
// version and the version of slipway's layout (2: each package once, with
// its platforms; 1 listed packages per platform).
func SBOMMakerVersion() string { return Version() + "+slipway-sbom2" }

// SBOM returns a software bill of materials of every platform of idx in
// format (FormatSPDXJSON or FormatCycloneDX), made by Trivy's own
// marshalers: the OS packages and each Go binary with its modules and Go
// version (the "stdlib" package). Each package (name, version, package
// URL) is listed once, with the platforms it is in: the SPDX package's
// annotation PlatformsAnnotation, the CycloneDX component's property
// PlatformsProperty. Packages whose URL names the architecture (Debian's
// ?arch=amd64) are therefore listed per architecture; Go modules once.
// It needs no vulnerability DB and shares the layer cache with Scan.
func (s *Scanner) SBOM(ctx context.Context, idx v1.ImageIndex, format string) ([]byte, error) {
	if err := checkSBOMFormat(format); err != nil {
		return nil, err
	}
	digest, imgs, err := indexImages(idx)
	if err != nil {
		return nil, err
	}
	return s.sbom(ctx, digest.String(), imgs, format)
}

func checkSBOMFormat(format string) error {
	switch format {
	case FormatSPDXJSON, FormatCycloneDX:
		return nil
	}
	return fmt.Errorf("unknown sbom format %q (want %s or %s)", format, FormatSPDXJSON, FormatCycloneDX)
}

// sbomKey identifies a package, an application (the file holding
// language packages: name only) or the OS (family and release) in an SBOM.
type sbomKey struct{ name, version, purl string }

// mergedSBOM is one Trivy report of several platforms: a Result per
// target (the OS, or a file holding language packages), each package of a
// target once, and the platforms each package, file and OS is in.
type mergedSBOM struct {
	report    types.Report
	results   map[string]int // target key → index in report.Results
	packages  map[string]map[sbomKey]int
	platforms map[sbomKey][]string
}

// pkgKey is a package's key: its package URL, which holds name and full
// version (Debian's epoch and revision, which Trivy writes into SPDX and
// CycloneDX versions but not into Package.Version); name and version for
// a package without one.
func pkgKey(p ftypes.Package) sbomKey {
	if p.Identifier.PURL != nil {
		return docKey(p.Name, p.Version, p.Identifier.PURL.String())
	}
	return docKey(p.Name, p.Version, "")
}

// docKey is the key of an SBOM document's package or component.
func docKey(name, version, purl string) sbomKey {
	if purl != "" {
		return sbomKey{purl: purl}
	}
	return sbomKey{name: name, version: version}
}

func (m *mergedSBOM) seen(k sbomKey, platform string) {
	if !slices.Contains(m.platforms[k], platform) {
		m.platforms[k] = append(m.platforms[k], platform)
	}
}

// add merges one platform's results.
func (m *mergedSBOM) add(platform string, osInfo ftypes.OS, results types.Results) {
	if osInfo.Detected() {
		m.seen(sbomKey{name: string(osInfo.Family), version: osInfo.Name}, platform)
	}
	for _, r := range results {
		key := string(r.Class) + "\x00" + string(r.Type) + "\x00" + r.Target
		if r.Class == types.ClassOSPkg {
			// The OS result's target names the platform image's digest.
			key = string(r.Class) + "\x00" + string(r.Type)
			r.Target = m.report.ArtifactName + " (" + string(r.Type) + ")"
		} else {
			m.seen(sbomKey{name: r.Target}, platform)
		}
		i, ok := m.results[key]
		if !ok {
			i = len(m.report.Results)
			m.results[key] = i
			m.packages[key] = map[sbomKey]int{}
			m.report.Results = append(m.report.Results, types.Result{Target: r.Target, Class: r.Class, Type: r.Type})
		}
		res := &m.report.Results[i]
		for _, p := range r.Packages {
			k := pkgKey(p)
			m.seen(k, platform)
			if j, ok := m.packages[key][k]; ok {
				// Layers differ between platforms: name none rather than one.
				if res.Packages[j].Layer.Digest != p.Layer.Digest {
					res.Packages[j].Layer = ftypes.Layer{}
				}
				continue
			}
			m.packages[key][k] = len(res.Packages)
			res.Packages = append(res.Packages, p)
		}
	}
}

// sbom makes the SBOM of the platform images imgs of subject.
func (s *Scanner) sbom(ctx context.Context, subject string, imgs []platformImage, format string) ([]byte, error) {
	if err := checkSBOMFormat(format); err != nil {
		return nil, err
	}
	m := &mergedSBOM{
		report: types.Report{
			SchemaVersion: reportSchemaVersion,
			CreatedAt:     s.o.now(),
			ArtifactName:  subject,
			ArtifactType:  ftypes.TypeContainerImage,
		},
		results:   map[string]int{},
		packages:  map[string]map[sbomKey]int{},
		platforms: map[sbomKey][]string{},
	}
	for _, pi := range imgs {
		results, osFound, _, err := s.analyze(ctx, pi, false)
		if err != nil {
			return nil, fmt.Errorf("analysing %s: %w", pi.platform, err)
		}
		if m.report.Metadata.OS == nil && osFound.Detected() {
			m.report.Metadata.OS = &osFound
		}
		m.add(pi.platform, osFound, results)
	}
	for _, ps := range m.platforms {
		slices.Sort(ps)
	}

	var buf bytes.Buffer
	switch format {
	case FormatSPDXJSON:
		doc, err := spdx.NewMarshaler(s.version).MarshalReport(ctx, m.report)
		if err != nil {
			return nil, fmt.Errorf("marshalling spdx: %w", err)
		}
		for _, p := range doc.Packages {
			purl := ""
			for _, ref := range p.PackageExternalReferences {
				if ref.RefType == "purl" {
					purl = ref.Locator
				}
			}
			ps := m.platforms[docKey(p.PackageName, p.PackageVersion, purl)]
			if len(ps) == 0 {
				continue
			}
			p.Annotations = append(p.Annotations, tspdx.Annotation{
				Annotator:         spdxcommon.Annotator{Annotator: sbomAnnotator, AnnotatorType: "Tool"},
				AnnotationDate:    doc.CreationInfo.Created,
				AnnotationType:    "OTHER",
				AnnotationComment: PlatformsAnnotation + ": " + strings.Join(ps, ", "),
			})
		}
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("encoding spdx: %w", err)
		}
	case FormatCycloneDX:
		cm := cyclonedx.NewMarshaler(s.version)
		bom, err := cm.MarshalReport(ctx, m.report)
		if err != nil {
			return nil, fmt.Errorf("marshalling cyclonedx: %w", err)
		}
		if bom.Components != nil {
			for i := range *bom.Components {
				c := &(*bom.Components)[i]
				ps := m.platforms[docKey(c.Name, c.Version, c.PackageURL)]
				if len(ps) == 0 {
					continue
				}
				props := append(derefProps(c.Properties), cdx.Property{Name: PlatformsProperty, Value: strings.Join(ps, ",")})
				c.Properties = &props
			}
		}
		if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
			return nil, fmt.Errorf("encoding cyclonedx: %w", err)
		}
	}
	return buf.Bytes(), nil
}

func derefProps(p *[]cdx.Property) []cdx.Property {
	if p == nil {
		return nil
	}
	return *p
}
