// Package trivy implements scan.Scanner with Trivy as a library: every
// platform of a locally assembled image index is analysed in memory, OS
// packages (dpkg, apk, rpm) and Go binaries only, with no network access.
// It is the only slipway package that imports Trivy.
package trivy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	tdb "github.com/aquasecurity/trivy-db/pkg/db"
	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	ospkgDetector "github.com/aquasecurity/trivy/pkg/detector/ospkg"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	v1 "github.com/google/go-containerregistry/pkg/v1"

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

// TrivyModule is the module path whose version the reports name.
const TrivyModule = "github.com/aquasecurity/trivy"

// maxDBClockSkew is how far ahead of the clock a DB's UpdatedAt may be
// before the scan cannot judge with it.
const maxDBClockSkew = time.Hour

// Default limits on decompressed layer bytes read by one scan of one
// platform image: a gzip bomb in a base layer fails the scan instead of
// running for hours or filling the temp dir.
const (
	DefaultMaxLayerBytes int64 = 2 << 30
	DefaultMaxImageBytes int64 = 8 << 30
)

// Scanner scans images with Trivy. It is safe for concurrent use, and any
// number of Scanners, in one or several processes, may share a cache dir
// and a DB dir.
type Scanner struct {
	o       options
	cache   *layerCache
	version string
}

var _ scan.Scanner = (*Scanner)(nil)

// Option configures New.
type Option func(*options) error

type options struct {
	dbDir, cacheDir string
	maxAge          time.Duration
	allowStale      bool
	log             *slog.Logger
	now             func() time.Time
	parallel        int
	maxLayerBytes   int64
	maxImageBytes   int64
}

// WithDBDir sets the vulnerability DB directory, in Trivy's cache layout
// (dir/db/trivy.db, dir/db/metadata.json), so `trivy --cache-dir dir` and
// slipway share one DB. Default: Trivy's default cache dir
// ($XDG_CACHE_HOME/trivy, usually ~/.cache/trivy).
func WithDBDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty db dir")
		}
		o.dbDir = dir
		return nil
	}
}

// WithCacheDir sets where per-layer analysis results are kept. Default:
// $XDG_CACHE_HOME/slipway/scan.
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty cache dir")
		}
		o.cacheDir = dir
		return nil
	}
}

// WithMaxAge sets the maximum age of the DB, measured from its UpdatedAt.
// Default: scan.DefaultDBMaxAge (168h). Zero disables the age check.
func WithMaxAge(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("negative db max age %s", d)
		}
		o.maxAge = d
		return nil
	}
}

// WithAllowStale lets scans use a DB older than the maximum age, logging a
// warning with its age. A missing or wrong-schema DB still fails.
// Default: false (fail closed).
func WithAllowStale(allow bool) Option {
	return func(o *options) error { o.allowStale = allow; return nil }
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}

// WithClock sets the clock used for the DB age and the report times.
// Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("nil clock")
		}
		o.now = now
		return nil
	}
}

// WithParallel sets how many layers are analysed at once. Default: GOMAXPROCS.
func WithParallel(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("parallel %d < 1", n)
		}
		o.parallel = n
		return nil
	}
}

// WithMaxDecompressed limits the decompressed bytes read from one layer
// and from all layers of one platform image in one scan; past either, the
// scan fails with an error wrapping ErrTooLarge. Zero keeps the default
// (DefaultMaxLayerBytes, DefaultMaxImageBytes).
func WithMaxDecompressed(perLayer, perImage int64) Option {
	return func(o *options) error {
		if perLayer < 0 || perImage < 0 {
			return fmt.Errorf("negative decompressed size limit (layer %d, image %d)", perLayer, perImage)
		}
		if perLayer > 0 {
			o.maxLayerBytes = perLayer
		}
		if perImage > 0 {
			o.maxImageBytes = perImage
		}
		return nil
	}
}

// New returns a Scanner. It checks nothing about the DB yet: every scan
// checks it (missing, schema, age) so a long-lived Scanner notices a DB
// that went stale or was replaced.
func New(opts ...Option) (*Scanner, error) {
	o := options{maxAge: scan.DefaultDBMaxAge, log: discard(), now: time.Now, parallel: runtime.GOMAXPROCS(0),
		maxLayerBytes: DefaultMaxLayerBytes, maxImageBytes: DefaultMaxImageBytes}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("trivy scanner: %w", err)
		}
	}
	if o.dbDir == "" {
		dir, err := DefaultDBDir()
		if err != nil {
			return nil, fmt.Errorf("trivy scanner: %w", err)
		}
		o.dbDir = dir
	}
	if o.cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("trivy scanner: default cache dir: %w", err)
		}
		o.cacheDir = filepath.Join(base, "slipway", "scan")
	}
	c, err := newLayerCache(o.cacheDir)
	if err != nil {
		return nil, fmt.Errorf("trivy scanner: %w", err)
	}
	routeTrivyLogs(o.log)
	return &Scanner{o: o, cache: c, version: Version()}, nil
}

// CheckDB checks the scanner's DB as a scan would: missing, wrong schema
// and (unless stale DBs are allowed) too old are *DBError.
func (s *Scanner) CheckDB() (DBStatus, error) {
	return checkDB(s.o.dbDir, s.o.now(), s.o.maxAge, s.o.allowStale, s.o.log)
}

// Scan analyses every platform manifest of idx and returns one report:
// findings deduplicated by vulnerability id, package name and installed
// version, each listing the platforms it occurs in. Nested indexes are
// followed; attestation manifests (platform unknown/unknown) are skipped.
func (s *Scanner) Scan(ctx context.Context, idx v1.ImageIndex) (*scan.Report, error) {
	digest, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("index digest: %w", err)
	}
	var imgs []platformImage
	if err := collectImages(idx, &imgs); err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errors.New("index has no platform images")
	}
	return s.scan(ctx, digest.String(), imgs)
}

// ScanImage analyses a single-platform image; the platform comes from its
// config.
func (s *Scanner) ScanImage(ctx context.Context, img v1.Image) (*scan.Report, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	p, err := platformOf(img, nil)
	if err != nil {
		return nil, err
	}
	return s.scan(ctx, digest.String(), []platformImage{{img: img, platform: p, digest: digest.String()}})
}

type platformImage struct {
	img      v1.Image
	platform string
	digest   string
}

func collectImages(idx v1.ImageIndex, out *[]platformImage) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading index manifest: %w", err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("reading index %s: %w", d.Digest, err)
			}
			if err := collectImages(child, out); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			if d.Platform != nil && d.Platform.OS == "unknown" || d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
				continue
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return fmt.Errorf("reading image %s: %w", d.Digest, err)
			}
			p, err := platformOf(img, d.Platform)
			if err != nil {
				return err
			}
			*out = append(*out, platformImage{img: img, platform: p, digest: d.Digest.String()})
		}
	}
	return nil
}

func platformOf(img v1.Image, p *v1.Platform) (string, error) {
	if p == nil || p.OS == "" {
		cf, err := img.ConfigFile()
		if err != nil {
			return "", fmt.Errorf("reading image config: %w", err)
		}
		if cf.Platform() == nil {
			return "", errors.New("image config names no platform")
		}
		p = cf.Platform()
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s, nil
}

func (s *Scanner) scan(ctx context.Context, subject string, imgs []platformImage) (*scan.Report, error) {
	started := s.o.now()
	st, err := checkDB(s.o.dbDir, started, s.o.maxAge, s.o.allowStale, s.o.log)
	if err != nil {
		return nil, err
	}
	release, err := openDB(s.o.dbDir)
	if err != nil {
		return nil, err
	}
	defer release()

	r := &scan.Report{
		Subject: subject,
		Scanner: scan.ScannerInfo{Name: "trivy", Version: s.version},
		DB: scan.DBInfo{SchemaVersion: st.SchemaVersion, UpdatedAt: st.UpdatedAt,
			NextUpdate: st.NextUpdate, DownloadedAt: st.DownloadedAt},
		StartedAt: started,
		Findings:  []scan.Finding{},
	}
	if ahead := st.UpdatedAt.Sub(started); ahead > maxDBClockSkew {
		r.Unjudged = append(r.Unjudged, scan.Unjudged{Reason: scan.UnjudgedDBFromFuture,
			Detail: fmt.Sprintf("the vulnerability DB was updated at %s, %s ahead of this machine's clock (check the clock, or pull the DB again from a trusted repository)",
				st.UpdatedAt.UTC().Format(time.RFC3339), ahead.Round(time.Minute))})
	}
	merged := map[findingKey]int{}
	for _, pi := range imgs {
		t0 := time.Now()
		results, _, unjudged, err := s.analyze(ctx, pi, true)
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", pi.platform, err)
		}
		r.Unjudged = append(r.Unjudged, unjudged...)
		n := 0
		for _, res := range results {
			for _, v := range res.Vulnerabilities {
				n++
				mergeFinding(r, merged, res, v, pi.platform)
			}
		}
		s.o.log.Debug("scanned platform", "platform", pi.platform, "digest", pi.digest,
			"vulnerabilities", n, "duration", time.Since(t0).Round(time.Millisecond).String())
		if !slices.Contains(r.Platforms, pi.platform) {
			r.Platforms = append(r.Platforms, pi.platform)
		}
	}
	slices.Sort(r.Platforms)
	for i := range r.Findings {
		slices.Sort(r.Findings[i].PkgPaths)
		r.Findings[i].PkgPaths = slices.Compact(r.Findings[i].PkgPaths)
		if len(r.Findings[i].PkgPaths) > 0 {
			r.Findings[i].PkgPath = r.Findings[i].PkgPaths[0]
		}
		if len(r.Findings[i].PkgPaths) < 2 {
			r.Findings[i].PkgPaths = nil
		}
	}
	r.Sort()
	r.FinishedAt = s.o.now()
	return r, nil
}

type findingKey struct{ id, pkg, version string }

func mergeFinding(r *scan.Report, seen map[findingKey]int, res types.Result, v types.DetectedVulnerability, platform string) {
	k := findingKey{v.VulnerabilityID, v.PkgName, v.InstalledVersion}
	i, ok := seen[k]
	if !ok {
		f := scan.Finding{
			ID:               v.VulnerabilityID,
			Severity:         severity(v.Severity),
			PkgName:          v.PkgName,
			PkgType:          string(res.Type),
			InstalledVersion: v.InstalledVersion,
			FixedVersion:     v.FixedVersion,
			Status:           v.Status.String(),
			Title:            cmp.Or(v.Title, firstLine(v.Description)),
			PrimaryURL:       v.PrimaryURL,
		}
		if v.PkgIdentifier.PURL != nil {
			f.PURL = v.PkgIdentifier.PURL.String()
		}
		r.Findings = append(r.Findings, f)
		i = len(r.Findings) - 1
		seen[k] = i
	}
	f := &r.Findings[i]
	if !slices.Contains(f.Platforms, platform) {
		f.Platforms = append(f.Platforms, platform)
	}
	// Trivy records where a language package was found in PkgPath for some
	// types and only in the result target (the binary) for Go binaries.
	path := v.PkgPath
	if path == "" && res.Class == types.ClassLangPkg {
		path = res.Target
	}
	if p := strings.TrimPrefix(path, "/"); p != "" {
		f.PkgPaths = append(f.PkgPaths, p)
	}
}

func severity(s string) scan.Severity {
	sev, err := scan.ParseSeverity(s)
	if err != nil {
		return scan.SeverityUnknown
	}
	return sev
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

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
	art, err := artimage.NewArtifact(img, s.cache, s.artifactOption())
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("preparing analysis: %w", err)
	}
	ref, err := art.Inspect(ctx)
	if err != nil {
		return nil, ftypes.OS{}, nil, fmt.Errorf("analysing layers: %w", err)
	}
	defer art.Clean(ref)

	detail, err := applier.NewApplier(s.cache).ApplyLayers(ctx, ref.ID, ref.BlobIDs)
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
	if !detect {
		opts.Scanners = types.Scanners{types.SBOMScanner}
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
	if detect {
		vc := vulnerability.NewClient(tdb.Config{})
		for i := range results {
			vc.FillInfo(results[i].Vulnerabilities, opts.VulnSeveritySources)
		}
	}
	return results, detail.OS, unjudged, nil
}
