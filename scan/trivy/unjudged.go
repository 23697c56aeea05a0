package trivy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	trivyclock "github.com/aquasecurity/trivy/pkg/clock"
	ospkgDetector "github.com/aquasecurity/trivy/pkg/detector/ospkg"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// versionlessFamilies are the OS families whose Trivy driver has no
// releases (rolling distributions): every release is supported.
var versionlessFamilies = []ftypes.OSType{ftypes.Wolfi, ftypes.Chainguard, ftypes.Echo, ftypes.MinimOS,
	ftypes.Bottlerocket, ftypes.Azure, ftypes.CBLMariner, ftypes.CoreOS}

// unsupportedRelease says why Trivy cannot judge the OS packages of os at
// now, or "" when it can. Trivy's drivers treat a release missing from
// their end-of-life list as "maybe the latest" and detect nothing for it
// (Debian 99 has no advisories), so the release is asked about at a date
// past every listed end of life: a release on the list is unsupported
// then, one missing from it still "supported".
func unsupportedRelease(ctx context.Context, os ftypes.OS, now time.Time) string {
	d, err := ospkgDetector.NewDetector(types.ScanTarget{OS: os})
	if err != nil {
		return "" // no driver for the family: the scan itself reports it
	}
	_, eosl, err := d.Detect(trivyclock.With(ctx, now))
	if err != nil {
		return fmt.Sprintf("OS %s: %v", os.String(), err)
	}
	if eosl {
		return fmt.Sprintf("OS %s is past its end of life: its advisories are no longer maintained", os.String())
	}
	if slices.Contains(versionlessFamilies, os.Family) {
		return ""
	}
	_, eosl, err = d.Detect(trivyclock.With(ctx, time.Date(1_000_000, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err == nil && !eosl {
		return fmt.Sprintf("OS %s is a release the scanner does not know: it has no advisories for it", os.String())
	}
	return ""
}

// slipwayBinary is the path (without the leading slash) of the Go binary
// slipway built into the image, or "" when the image's last layer is not
// slipway's application layer (see build: history comment "slipway",
// created by "slipway build …", the binary is the entrypoint).
func slipwayBinary(cf *v1.ConfigFile) string {
	if cf == nil || len(cf.Config.Entrypoint) == 0 {
		return ""
	}
	var last *v1.History
	for i := range cf.History {
		if !cf.History[i].EmptyLayer {
			last = &cf.History[i]
		}
	}
	if last == nil || last.Comment != "slipway" || !strings.HasPrefix(last.CreatedBy, "slipway build ") {
		return ""
	}
	return strings.TrimLeft(path.Clean("/"+cf.Config.Entrypoint[0]), "/")
}

// hasGoBuildInfo reports whether Trivy read Go module information from the
// binary at bin: its main module (slipway builds in module mode, so build
// info without one had its module data removed, e.g. runtime.modinfo
// overridden; only the Go version would be left to judge).
func hasGoBuildInfo(apps []ftypes.Application, bin string) bool {
	for _, a := range apps {
		if a.Type != ftypes.GoBinary || strings.TrimLeft(a.FilePath, "/") != bin {
			continue
		}
		for _, p := range a.Packages {
			if p.Relationship == ftypes.RelationshipRoot {
				return true
			}
		}
	}
	return false
}
