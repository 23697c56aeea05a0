package trivy

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	"github.com/aquasecurity/trivy/pkg/fanal/handler"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/fanal/walker"
	xio "github.com/aquasecurity/trivy/pkg/x/io"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// artifactVersion is the artifact version in the cache keys. It is Trivy
// v0.74.0's image artifact's (pkg/fanal/artifact/image), whose analysis
// inspect reproduces entry for entry, so the cache entries that artifact
// wrote stay valid. Change it (or cacheLayoutVersion) if inspect ever
// writes other entries than that artifact would.
const artifactVersion = 1

// inspector runs Trivy's analyzers, post-analyzers, post-handlers and
// image-config analyzers over a layer view, as Trivy's image artifact
// (pkg/fanal/artifact/image, Inspect) does, for what slipway uses of it:
// no remote SBOM sources, no image size check, no secret or
// misconfiguration scanning. Importing that artifact package instead would
// link Trivy's image sources (Docker daemon, containerd, podman, cloud
// registries) and its OCI downloader (go-getter, cloud SDKs), which slipway
// never uses: it hands Trivy a v1.Image it already has.
type inspector struct {
	cache     cache.Cache
	opt       artifact.Option
	analyzers analyzer.AnalyzerGroup
	config    analyzer.ConfigAnalyzerGroup
	handlers  handler.Manager
	walker    walker.LayerTar
}

func newInspector(c cache.Cache, opt artifact.Option) (*inspector, error) {
	handlers, err := handler.NewManager(opt)
	if err != nil {
		return nil, fmt.Errorf("post-handlers: %w", err)
	}
	ag, err := analyzer.NewAnalyzerGroup(opt.AnalyzerOptions())
	if err != nil {
		return nil, fmt.Errorf("analyzers: %w", err)
	}
	cg, err := analyzer.NewConfigAnalyzerGroup(opt.ConfigAnalyzerOptions())
	if err != nil {
		return nil, fmt.Errorf("image config analyzers: %w", err)
	}
	return &inspector{cache: c, opt: opt, analyzers: ag, config: cg, handlers: handlers, walker: walker.NewLayerTar(opt.WalkerOption)}, nil
}

// inspected names the cache entries the applier merges: the image's and
// one per layer, bottom first.
type inspected struct {
	imageKey  string
	layerKeys []string
	// cache is the analysis cache bound to these keys (boundCache): what
	// the applier and the server upload read.
	cache cache.Cache
}

// inspect analyses the layers of v that the cache lacks, in parallel, and
// the image config if the cache lacks it, and stores the results.
func (in *inspector) inspect(ctx context.Context, v *layerView) (inspected, error) {
	imageID, err := v.ID()
	if err != nil {
		return inspected{}, err
	}
	cf, err := v.ConfigFile()
	if err != nil {
		return inspected{}, err
	}
	diffIDs := make([]string, len(cf.RootFS.DiffIDs))
	for i, h := range cf.RootFS.DiffIDs {
		diffIDs[i] = h.String()
	}

	// The image key leaves the options out, as Trivy's does, so that it does
	// not change with misconfiguration policies.
	var ref inspected
	ref.imageKey, err = cache.CalcKey(imageID, artifactVersion, in.config.AnalyzerVersions(), nil, artifact.Option{})
	if err != nil {
		return inspected{}, fmt.Errorf("image cache key: %w", err)
	}
	hooks := in.handlers.Versions()
	for _, d := range diffIDs {
		k, err := cache.CalcKey(d, artifactVersion, in.analyzers.AnalyzerVersions(), hooks, in.opt)
		if err != nil {
			return inspected{}, fmt.Errorf("layer cache key: %w", err)
		}
		ref.layerKeys = append(ref.layerKeys, k)
	}
	layers := layersByKey(diffIDs, ref.layerKeys, cf)
	bound := &boundCache{Cache: in.cache, layers: map[string]layerIdentity{}, arch: cf.Architecture, os: cf.OS}
	for key, l := range layers {
		h, err := v1.NewHash(l.DiffID)
		if err != nil {
			return inspected{}, fmt.Errorf("layer ID %s: %w", l.DiffID, err)
		}
		vl, ok := v.layers[h]
		if !ok {
			return inspected{}, fmt.Errorf("no view layer %s", h)
		}
		d, err := vl.Digest()
		if err != nil {
			return inspected{}, err
		}
		bound.layers[key] = layerIdentity{diffID: l.DiffID, digest: d.String()}
	}
	ref.cache = bound

	missingImage, missingLayers, err := bound.MissingBlobs(ctx, ref.imageKey, ref.layerKeys)
	if err != nil {
		return inspected{}, fmt.Errorf("looking up the cache: %w", err)
	}

	// Layers in parallel, each stored as soon as it is analysed; the first
	// error cancels the others.
	oses := make([]ftypes.OS, len(missingLayers))
	eg, egCtx := errgroup.WithContext(ctx)
	eg.SetLimit(in.opt.Parallel)
	for i, key := range missingLayers {
		if egCtx.Err() != nil {
			break // a layer failed, or ctx ended: checked below
		}
		l := layers[key]
		eg.Go(func() (err error) {
			h, err := v1.NewHash(l.DiffID)
			if err != nil {
				return fmt.Errorf("layer ID %s: %w", l.DiffID, err)
			}
			defer recoverTo(&err, h)
			vl, ok := v.layers[h]
			if !ok {
				return fmt.Errorf("no view layer %s", h)
			}
			info, err := in.inspectLayer(egCtx, vl, l)
			if err != nil {
				return fmt.Errorf("analysing layer %s: %w", l.DiffID, err)
			}
			if err := in.cache.PutBlob(egCtx, key, info); err != nil {
				return fmt.Errorf("storing the analysis of layer %s: %w", l.DiffID, err)
			}
			oses[i] = info.OS
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return inspected{}, err
	}
	if err := ctx.Err(); err != nil {
		return inspected{}, err
	}

	if missingImage {
		var osFound ftypes.OS
		for _, o := range oses {
			osFound.Merge(o)
		}
		res := in.config.AnalyzeImageConfig(ctx, osFound, cf)
		if res == nil {
			res = &analyzer.ConfigAnalysisResult{}
		}
		info := ftypes.ArtifactInfo{
			SchemaVersion:    ftypes.ArtifactJSONSchemaVersion,
			Architecture:     cf.Architecture,
			Created:          cf.Created.Time,
			DockerVersion:    cf.DockerVersion,
			OS:               cf.OS,
			Misconfiguration: res.Misconfiguration,
			Secret:           res.Secret,
			HistoryPackages:  res.HistoryPackages,
		}
		if err := in.cache.PutArtifact(ctx, ref.imageKey, info); err != nil {
			return inspected{}, fmt.Errorf("storing the image analysis: %w", err)
		}
	}
	return ref, nil
}

// layersByKey pairs each layer's cache key with its diff ID and the
// command that created it, from the config's history when the history has
// one non-empty entry per layer (as Trivy does; the view's correction
// layer has none, so then no layer gets one).
func layersByKey(diffIDs, keys []string, cf *v1.ConfigFile) map[string]ftypes.Layer {
	var createdBy []string
	for _, h := range cf.History {
		if h.EmptyLayer {
			continue
		}
		c := strings.TrimPrefix(h.CreatedBy, "/bin/sh -c ")
		createdBy = append(createdBy, strings.TrimPrefix(c, "#(nop) "))
	}
	valid := len(createdBy) == len(diffIDs)
	out := make(map[string]ftypes.Layer, len(keys))
	for i, d := range diffIDs {
		l := ftypes.Layer{DiffID: d}
		if valid {
			l.CreatedBy = createdBy[i]
		}
		out[keys[i]] = l
	}
	return out
}

// inspectLayer walks one view layer's tar through the analyzers, then the
// post-analyzers over the files they asked for, then the post-handlers.
func (in *inspector) inspectLayer(ctx context.Context, vl *viewLayer, l ftypes.Layer) (ftypes.BlobInfo, error) {
	// View layers are never "uncompressed" in Trivy's sense (no
	// UncompressedLayer field), so the blob records the layer digest.
	digest, err := vl.Digest()
	if err != nil {
		return ftypes.BlobInfo{}, err
	}
	rc, err := vl.Uncompressed()
	if err != nil {
		return ftypes.BlobInfo{}, err
	}
	defer rc.Close()
	cr := xio.NewCountingReader(rc)

	// The analyzers run in goroutines of their own group; its context ends
	// when it is waited for, so post-analysis uses ctx.
	eg, egCtx := errgroup.WithContext(ctx)
	opts := analyzer.AnalysisOptions{Offline: in.opt.Offline, FileChecksum: in.opt.FileChecksum}
	result := analyzer.NewAnalysisResult()
	limit := semaphore.NewWeighted(int64(in.opt.Parallel))
	composite, err := in.analyzers.PostAnalyzerFS()
	if err != nil {
		return ftypes.BlobInfo{}, fmt.Errorf("post-analysis filesystem: %w", err)
	}
	defer composite.Cleanup()

	// Trivy's image artifact disables the secret analyzer for base layers
	// only; slipway disables it everywhere, so no layer disables more.
	opqDirs, whFiles, walkErr := in.walker.Walk(cr, func(p string, info os.FileInfo, opener analyzer.Opener) error {
		if err := in.analyzers.AnalyzeFile(egCtx, eg, limit, result, "", p, info, opener, nil, opts); err != nil {
			return fmt.Errorf("analysing %s: %w", p, err)
		}
		types := in.analyzers.RequiredPostAnalyzers(p, info)
		if len(types) == 0 {
			return nil
		}
		tmp, err := composite.CopyFileToTemp(opener, info)
		if err != nil {
			return fmt.Errorf("copying %s for post-analysis: %w", p, err)
		}
		if err := composite.CreateLink(types, "", p, tmp); err != nil {
			return fmt.Errorf("linking %s for post-analysis: %w", p, err)
		}
		return nil
	})
	// A failed analyzer cancels egCtx, which can make the walk fail with a
	// context error: report the analyzer's error first.
	if err := eg.Wait(); err != nil {
		return ftypes.BlobInfo{}, err
	}
	if walkErr != nil {
		return ftypes.BlobInfo{}, fmt.Errorf("reading the layer: %w", walkErr)
	}
	if err := in.analyzers.PostAnalyze(ctx, composite, result, opts); err != nil {
		return ftypes.BlobInfo{}, err
	}
	// The bytes after the end-of-archive marker count in the size.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return ftypes.BlobInfo{}, fmt.Errorf("reading the layer: %w", err)
	}
	result.Sort()

	blob := ftypes.BlobInfo{
		SchemaVersion:     ftypes.BlobJSONSchemaVersion,
		Size:              cr.BytesRead(),
		Digest:            digest.String(),
		DiffID:            l.DiffID,
		CreatedBy:         l.CreatedBy,
		OpaqueDirs:        opqDirs,
		WhiteoutFiles:     whFiles,
		OS:                result.OS,
		Repository:        result.Repository,
		PackageInfos:      result.PackageInfos,
		Applications:      result.Applications,
		Misconfigurations: result.Misconfigurations,
		Secrets:           result.Secrets,
		Licenses:          result.Licenses,
		CustomResources:   result.CustomResources,
		BuildInfo:         result.BuildInfo,
	}
	if err := in.handlers.PostHandle(ctx, result, &blob); err != nil {
		return ftypes.BlobInfo{}, fmt.Errorf("post-handlers: %w", err)
	}
	return blob, nil
}
