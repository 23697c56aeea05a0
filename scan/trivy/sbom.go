package trivy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	cdx "github.com/CycloneDX/cyclonedx-go"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/sbom/spdx"
	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/sign/vocab"
)

// SBOM formats, as configuration names them.
const (
	FormatSPDXJSON  = vocab.SBOMSPDXJSON  // SPDX 2.3 JSON
	FormatCycloneDX = vocab.SBOMCycloneDX // CycloneDX JSON
)

// SBOM returns a software bill of materials of every platform of idx in
// format (FormatSPDXJSON or FormatCycloneDX), made by Trivy's own
// marshalers: the OS packages of each platform and each Go binary with its
// modules and Go version (the "stdlib" package). Each platform's packages
// sit under components named after the platform. It needs no
// vulnerability DB and shares the layer cache with Scan.
func (s *Scanner) SBOM(ctx context.Context, idx v1.ImageIndex, format string) ([]byte, error) {
	switch format {
	case FormatSPDXJSON, FormatCycloneDX:
	default:
		return nil, fmt.Errorf("unknown sbom format %q (want %s or %s)", format, FormatSPDXJSON, FormatCycloneDX)
	}
	digest, imgs, err := indexImages(idx)
	if err != nil {
		return nil, err
	}
	report := types.Report{
		SchemaVersion: 2,
		CreatedAt:     s.o.now(),
		ArtifactName:  digest.String(),
		ArtifactType:  ftypes.TypeContainerImage,
	}
	for _, pi := range imgs {
		results, osFound, _, err := s.analyze(ctx, pi, false)
		if err != nil {
			return nil, fmt.Errorf("analysing %s: %w", pi.platform, err)
		}
		if report.Metadata.OS == nil && osFound.Detected() {
			report.Metadata.OS = &osFound
		}
		for _, r := range results {
			r.Target = pi.platform + " " + r.Target
			r.Vulnerabilities = nil
			report.Results = append(report.Results, r)
		}
	}

	var buf bytes.Buffer
	switch format {
	case FormatSPDXJSON:
		doc, err := spdx.NewMarshaler(s.version).MarshalReport(ctx, report)
		if err != nil {
			return nil, fmt.Errorf("marshalling spdx: %w", err)
		}
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("encoding spdx: %w", err)
		}
	case FormatCycloneDX:
		m := cyclonedx.NewMarshaler(s.version)
		bom, err := m.MarshalReport(ctx, report)
		if err != nil {
			return nil, fmt.Errorf("marshalling cyclonedx: %w", err)
		}
		if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
			return nil, fmt.Errorf("encoding cyclonedx: %w", err)
		}
	}
	return buf.Bytes(), nil
}
