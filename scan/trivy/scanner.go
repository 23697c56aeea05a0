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
	"runtime"
	"slices"
	"strings"
	"time"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-build/slipway/scan"
)

// TrivyModule is the module path whose version the reports name.
const TrivyModule = "github.com/aquasecurity/trivy"

// maxDBClockSkew is how far ahead of the clock a DB's UpdatedAt may be
// before the scan cannot judge with it.
const maxDBClockSkew = time.Hour

// Scanner scans images with Trivy. It is safe for concurrent use, and any
// number of Scanners, in one or several processes, may share a cache dir
// and a DB dir.
type Scanner struct {
	o options
	// cache holds layer indexes (always local) and, unless blobs is
	// another cache, Trivy's analysis entries.
	cache *layerCache
	// blobs holds Trivy's analysis entries: cache, or a shared Redis.
	blobs   analysisCache
	remote  *remoteServer // nil: local mode
	version string
	vex     *vexSet
}

var _ scan.Scanner = (*Scanner)(nil)

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
		dir, err := DefaultCacheDir()
		if err != nil {
			return nil, fmt.Errorf("trivy scanner: %w", err)
		}
		o.cacheDir = dir
	}
	c, err := newLayerCache(o.cacheDir)
	if err != nil {
		return nil, fmt.Errorf("trivy scanner: %w", err)
	}
	routeTrivyLogs(o.log)
	vs, err := loadVEX(o.vex)
	if err != nil {
		return nil, fmt.Errorf("trivy scanner: %w", err)
	}
	s := &Scanner{o: o, cache: c, blobs: c, version: Version(), vex: vs}
	if o.redis != nil {
		if s.blobs, err = newRedisCache(*o.redis, o.log); err != nil {
			return nil, fmt.Errorf("trivy scanner: %w", err)
		}
	}
	if o.server != nil {
		s.remote = newRemoteServer(*o.server)
	}
	return s, nil
}

// Close releases the connections of a shared cache; a Scanner with a
// local cache holds none.
func (s *Scanner) Close() error {
	if s.blobs != analysisCache(s.cache) {
		return s.blobs.Close()
	}
	return nil
}

// CheckDB checks the scanner's DB as a scan would: missing, wrong schema
// and (unless stale DBs are allowed) too old are *DBError. With a Trivy
// server (WithServer) it is the server's DB, as its /version reports it.
func (s *Scanner) CheckDB() (DBStatus, error) {
	if s.remote != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.remote.http.Timeout)
		defer cancel()
		return s.checkServerDB(ctx, s.o.now())
	}
	return checkDB(s.o.dbDir, s.o.now(), s.o.maxAge, s.o.allowStale, s.o.log)
}

// checkServerDB applies the local DB's freshness policy to the server's DB.
func (s *Scanner) checkServerDB(ctx context.Context, now time.Time) (DBStatus, error) {
	st, err := s.remote.dbStatus(ctx, now)
	if err != nil {
		return st, err
	}
	return st, judgeAge(st, now, s.o.maxAge, s.o.allowStale, s.o.log)
}

// Scan analyses every platform manifest of idx and returns one report:
// findings deduplicated by vulnerability id, package name and installed
// version, each listing the platforms it occurs in. Nested indexes are
// followed; attestation manifests (platform unknown/unknown) are skipped.
func (s *Scanner) Scan(ctx context.Context, idx v1.ImageIndex) (*scan.Report, error) {
	digest, imgs, err := indexImages(idx)
	if err != nil {
		return nil, err
	}
	return s.scanSBOM(ctx, digest.String(), imgs)
}

// scanSBOM scans imgs, whose index or image is subject, into a report that
// can also make their SBOM.
func (s *Scanner) scanSBOM(ctx context.Context, subject string, imgs []platformImage) (*scan.Report, error) {
	r, err := s.scan(ctx, subject, imgs)
	if err != nil {
		return nil, err
	}
	r.MakeSBOM = func(ctx context.Context, f scan.Format) ([]byte, error) {
		return s.sbom(ctx, subject, imgs, string(f))
	}
	return r, nil
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
	return s.scanSBOM(ctx, digest.String(), []platformImage{{img: img, platform: p, digest: digest.String()}})
}

type platformImage struct {
	img      v1.Image
	platform string
	digest   string
}

// indexImages is idx's digest and its platform images, at least one.
func indexImages(idx v1.ImageIndex) (v1.Hash, []platformImage, error) {
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, nil, fmt.Errorf("index digest: %w", err)
	}
	var imgs []platformImage
	if err := collectImages(idx, &imgs); err != nil {
		return v1.Hash{}, nil, err
	}
	if len(imgs) == 0 {
		return v1.Hash{}, nil, errors.New("index has no platform images")
	}
	return digest, imgs, nil
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
	var st DBStatus
	var err error
	if s.remote != nil {
		// The server detects with its own DB: nothing local is opened.
		if st, err = s.checkServerDB(ctx, started); err != nil {
			return nil, err
		}
	} else {
		if st, err = checkDB(s.o.dbDir, started, s.o.maxAge, s.o.allowStale, s.o.log); err != nil {
			return nil, err
		}
		release, err := openDB(s.o.dbDir)
		if err != nil {
			return nil, err
		}
		defer release()
	}

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
	// The platforms are analysed side by side (a Go binary's layer is one
	// analyser's work, on one core) and merged in their order.
	type analysed struct {
		results  types.Results
		os       ftypes.OS
		unjudged []scan.Unjudged
	}
	done := make([]analysed, len(imgs))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(runtime.NumCPU())
	for i, pi := range imgs {
		eg.Go(func() error {
			t0 := time.Now()
			results, osInfo, unjudged, err := s.analyze(ectx, pi, true)
			if err != nil {
				return fmt.Errorf("scanning %s: %w", pi.platform, err)
			}
			s.o.log.Debug("scanned platform", "platform", pi.platform, "digest", pi.digest,
				"vulnerabilities", countVulnerabilities(results), "duration", time.Since(t0).Round(time.Millisecond).String())
			done[i] = analysed{results, osInfo, unjudged}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	merged := map[findingKey]int{}
	var native nativeReport
	vexed := newVEXOutcome()
	for i, pi := range imgs {
		results, osInfo, unjudged := done[i].results, done[i].os, done[i].unjudged
		native.add(pi.platform, osInfo, results)
		if s.vex != nil {
			if err := s.vex.filter(pi.platform, pi.digest, osInfo, results, vexed); err != nil {
				return nil, err
			}
		}
		r.Unjudged = append(r.Unjudged, unjudged...)
		for _, res := range results {
			for _, v := range res.Vulnerabilities {
				mergeFinding(r, merged, res, v, pi.platform)
			}
		}
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
	if s.vex != nil {
		vexed.apply(r)
	}
	r.Sort()
	r.FinishedAt = s.o.now()
	if r.TrivyReport, err = native.encode(subject, s.version, r.FinishedAt); err != nil {
		return nil, err
	}
	return r, nil
}

// countVulnerabilities is how many vulnerabilities results list.
func countVulnerabilities(results types.Results) int {
	n := 0
	for _, res := range results {
		n += len(res.Vulnerabilities)
	}
	return n
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
