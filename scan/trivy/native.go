package trivy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
)

// reportSchemaVersion is the SchemaVersion of Trivy's JSON report
// (pkg/report.SchemaVersion; that package is not imported because it links
// every report writer Trivy has).
const reportSchemaVersion = 2

// nativeReport collects Trivy's own report of a scan of several platforms
// (scan.Report.TrivyReport).
type nativeReport struct {
	results types.Results
	oses    []ftypes.OS
}

// add records the results of one platform: each Result's Target is
// prefixed with the platform, so the report stays unambiguous when
// platforms share targets. Packages are dropped, as `trivy --format json
// --list-all-pkgs=false` does: the SBOM attestation lists them.
func (n *nativeReport) add(platform string, osInfo ftypes.OS, results types.Results) {
	for _, r := range results {
		n.results = append(n.results, types.Result{
			Target:          platform + ": " + r.Target,
			Class:           r.Class,
			Type:            r.Type,
			Vulnerabilities: r.Vulnerabilities,
		})
	}
	n.oses = append(n.oses, osInfo)
}

// encode returns the report's JSON, encoded as Trivy's own writers encode
// a types.Report (pkg/report: JSONWriter, predicate.VulnWriter). The
// artifact is the index (its digest as the name); Metadata.OS is set when
// every platform has the same detected OS.
func (n *nativeReport) encode(subject, version string, created time.Time) (json.RawMessage, error) {
	r := types.Report{
		SchemaVersion: reportSchemaVersion,
		Trivy:         types.TrivyInfo{Version: strings.TrimPrefix(version, "v")}, // as Trivy names itself: 0.74.0
		CreatedAt:     created.UTC(),
		ArtifactName:  subject,
		ArtifactType:  ftypes.TypeContainerImage,
		Results:       n.results,
	}
	if len(n.oses) > 0 && n.oses[0].Detected() {
		same := true
		for _, o := range n.oses[1:] {
			same = same && o == n.oses[0]
		}
		if same {
			first := n.oses[0]
			r.Metadata.OS = &first
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding trivy report: %w", err)
	}
	return b, nil
}
