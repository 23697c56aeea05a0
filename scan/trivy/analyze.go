package trivy

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	tdb "github.com/aquasecurity/trivy-db/pkg/db"
	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	ospkgDetector "github.com/aquasecurity/trivy/pkg/detector/ospkg"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"

	"github.com/slipway-build/slipway/scan"

	// The analyzers slipway runs, and nothing else: OS detection, the three
	// OS package databases, Go binaries' build info. Trivy's analyzer/all
	// would add IaC, secret, license and Rekor-querying analyzers.
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/language/golang/binary"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/alpine"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/amazonlinux"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/debian"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/redhatbase"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/release"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/os/ubuntu"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/apk"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/dpkg"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/rpm"
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/repo/apk"

	// Drops language packages that an OS package installed (e.g. a Go
	// binary from a .deb), as Trivy's CLI does.
	_ "github.com/aquasecurity/trivy/pkg/fanal/handler/sysfile"
)

// enabledAnalyzers are the analyzers slipway runs. Everything else Trivy
// knows is disabled explicitly as well: another package linked into the
// same binary may import analyzer/all, which registers all of them.
var enabledAnalyzers = []analyzer.Type{
	analyzer.TypeOSRelease, analyzer.TypeAlpine, analyzer.TypeAmazon, analyzer.TypeDebian,
	analyzer.TypeUbuntu, analyzer.TypeCentOS, analyzer.TypeRocky, analyzer.TypeAlma,
	analyzer.TypeFedora, analyzer.TypeOracle, analyzer.TypeRedHatBase,
	analyzer.TypeApk, analyzer.TypeApkRepo, analyzer.TypeDpkg, analyzer.TypeRpm, analyzer.TypeRpmqa,
	analyzer.TypeGoBinary,
}

func disabledAnalyzers() []analyzer.Type {
	all := slices.Concat(analyzer.TypeOSes, analyzer.TypeLanguages, analyzer.TypeLockfiles,
		analyzer.TypeIndividualPkgs, analyzer.TypeConfigFiles, []analyzer.Type{
			analyzer.TypeExecutable, // queries Rekor for every binary
			analyzer.TypeSBOM, analyzer.TypeSecret, analyzer.TypeLicenseFile,
			analyzer.TypeHistoryDockerfile, analyzer.TypeImageConfigSecret, analyzer.TypeApkCommand,
			analyzer.TypeRpmArchive, analyzer.TypeDpkgLicense, analyzer.TypeRedHatContentManifestType,
			analyzer.TypeRedHatDockerfileType, analyzer.TypeAzure, analyzer.TypeSUSE, analyzer.TypeCoreOS,
			analyzer.TypeCBLMariner, analyzer.TypePhoton, analyzer.TypeUbuntuESM,
			analyzer.TypeBottlerocketInventory, analyzer.TypeRapidFortCurated,
		})
	var out []analyzer.Type
	for _, t := range all {
		if !slices.Contains(enabledAnalyzers, t) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Scanner) artifactOption() artifact.Option {
	return artifact.Option{
		DisabledAnalyzers: disabledAnalyzers(),
		DisabledHandlers:  []ftypes.HandlerType{ftypes.UnpackagedPostHandler}, // Rekor look-ups
		Parallel:          s.o.parallel,
		NoProgress:        true,
		Offline:           true,
	}
}

var scanOptions = types.ScanOptions{
	PkgTypes:            []string{types.PkgTypeOS, types.PkgTypeLibrary},
	PkgRelationships:    ftypes.Relationships,
	Scanners:            types.Scanners{types.VulnerabilityScanner},
	VulnSeveritySources: []dbTypes.SourceID{"auto"},
}

// analyze runs Trivy's analyzers over one image (through the layer cache)
// and, when detect is set, its vulnerability detectors. It is the part of
// Trivy's local scan service (pkg/scan/local) slipway needs, assembled here
// so that package's analyzer/all import stays out of the binary.
func (s *Scanner) analyze(ctx context.Context, pi platformImage, detect bool) (_ types.Results, _ ftypes.OS, unjudged []scan.Unjudged, err error) {
	// Hostile input must end in an error, not a crash, wherever Trivy runs
	// it on this goroutine.
	defer func() {
		if r := recover(); r != nil {
			s.o.log.Debug("trivy panicked", "platform", pi.platform, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("analysing %s: trivy panicked: %v", pi.platform, r)
		}
	}()
	img, err := s.newLayerView(ctx, pi.img, pi.digest, newBudget(s.o.maxLayerBytes, s.o.maxImageBytes))
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("reading layers: %w", err)
	}
	in, err := newInspector(s.blobs, s.artifactOption())
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("preparing analysis: %w", err)
	}
	ref, err := in.inspect(ctx, img)
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("analysing layers: %w", err)
	}

	detail, err := applier.NewApplier(ref.cache).ApplyLayers(ctx, ref.imageKey, ref.layerKeys)
	cannot := func(reason, detail string) {
		unjudged = append(unjudged, scan.Unjudged{Reason: reason, Platform: pi.platform, Detail: detail})
	}
	switch {
	case errors.Is(err, analyzer.ErrUnknownOS):
		// Go binaries on scratch/distroless-static: no OS, only libraries.
		if detail.Repository != nil {
			detail.OS = ftypes.OS{Family: detail.Repository.Family, Name: detail.Repository.Release}
		}
		if !detail.OS.Detected() && len(detail.Packages) > 0 {
			cannot(scan.UnjudgedUnknownOS, fmt.Sprintf("an OS package database lists %d packages but the OS is not recognised (no known release file)", len(detail.Packages)))
		}
	case errors.Is(err, analyzer.ErrNoPkgsDetected):
		cannot(scan.UnjudgedNoPackageDB, fmt.Sprintf("OS %s detected but no package database is visible (removed, or where the scanner does not look)", detail.OS.String()))
	case err != nil:
		return nil, ftypes.OS{}, nil, fmt.Errorf("merging layers: %w", err)
	}
	if detect && detail.OS.Detected() && len(detail.Packages) > 0 {
		if why := unsupportedRelease(ctx, detail.OS, s.o.now()); why != "" {
			cannot(scan.UnjudgedUnsupportedOS, why)
		}
	}
	if bin := slipwayBinary(img.config); bin != "" && !hasGoBuildInfo(detail.Applications, bin) {
		cannot(scan.UnjudgedNoGoBuildInfo, fmt.Sprintf("the Go binary slipway built, /%s, has no readable module information (runtime.modinfo overridden, or the binary rewritten after the build?)", bin))
	}

	target := types.ScanTarget{
		Name:         pi.digest,
		OS:           detail.OS,
		Repository:   detail.Repository,
		Packages:     detail.Packages,
		Applications: detail.Applications,
	}
	opts := scanOptions
	if !detect || s.remote != nil {
		// Packages only: with a server, what the image holds is what the
		// server's answer is checked against.
		opts.Scanners = types.Scanners{types.SBOMScanner}
	}
	serverSkipsOS := false
	if detect && s.remote != nil && detail.OS.Detected() && len(detail.Packages) > 0 {
		// Without detection the OS package scanner does not ask for the
		// family's detector; ask as a local scan would.
		if _, err := ospkgDetector.NewDetector(types.ScanTarget{OS: detail.OS}); errors.Is(err, ospkgDetector.ErrUnsupportedOS) {
			serverSkipsOS = true // the server answers without the OS result
			cannot(scan.UnjudgedUnsupportedOS, fmt.Sprintf("OS %s has no vulnerability detection in the scanner", detail.OS.String()))
		}
	}
	var results types.Results
	osRes, _, err := ospkg.NewScanner().Scan(ctx, target, opts)
	switch {
	case errors.Is(err, ospkgDetector.ErrUnsupportedOS):
		if len(detail.Packages) > 0 {
			cannot(scan.UnjudgedUnsupportedOS, fmt.Sprintf("OS %s has no vulnerability detection in the scanner", detail.OS.String()))
		}
	case err != nil:
		return nil, ftypes.OS{}, nil, fmt.Errorf("scanning OS packages: %w", err)
	case osRes.Target != "":
		results = append(results, osRes)
	}
	langRes, err := langpkg.NewScanner().Scan(ctx, target, opts)
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("scanning application packages: %w", err)
	}
	results = append(results, langRes...)
	if detect && s.remote != nil {
		if err := s.remote.upload(ctx, ref.cache, ref); err != nil {
			return nil, ftypes.OS{}, nil, err
		}
		want := results
		if serverSkipsOS {
			want = slices.DeleteFunc(slices.Clone(results), func(r types.Result) bool { return r.Class == types.ClassOSPkg })
		}
		if results, err = s.remote.scan(ctx, pi.digest, ref, detail.OS, want, scanOptions); err != nil {
			return nil, ftypes.OS{}, nil, err
		}
	} else if detect {
		vc := vulnerability.NewClient(tdb.Config{})
		for i := range results {
			vc.FillInfo(results[i].Vulnerabilities, opts.VulnSeveritySources)
		}
	}
	return results, detail.OS, unjudged, nil
}
