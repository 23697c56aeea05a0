package trivy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// viewVersion changes when the layer views change.
const viewVersion = 1

// layerView is what Trivy's analyzers are fed instead of the image's own
// layers. Trivy's tar walker only reads regular files and its merge only
// knows paths, so on their own they miss what runc would see: a Go binary
// kept only through a hard link whose first name a later layer whites out,
// a package database that is a hard link, a package-database directory
// that is a symlink. In the view:
//
//   - every layer is re-encoded with its hard links as regular files
//     holding the content they link to (from the same or a lower layer);
//   - when the package-database and OS-release paths Trivy's analyzers
//     read resolve, in the final filesystem, to other files than Trivy's
//     merge would give (symlinks, replaced directories), one more layer
//     puts the right content at those paths or whites them out.
//
// Each view layer is cached by Trivy under a diff ID of slipway's own (see
// viewID): derived from layer digests and diff_ids that slipway verified,
// never from the config alone. Every layer stream slipway reads is checked
// against both its digest and the diff_id the config claims.
type layerView struct {
	base    v1.Image
	name    string
	config  *v1.ConfigFile
	sources []sourceLayer
	indexes []*layerIndex
	links   []map[int]origin // per layer: hard link entry → content origin
	fixes   []correction
	layers  map[v1.Hash]*viewLayer
	order   []*viewLayer
}

var _ ftypes.Image = (*layerView)(nil)

// staticPaths returns the paths the package-database and OS analyzers
// read, as Trivy's analyzers declare them.
var staticPaths = sync.OnceValues(func() ([]string, error) {
	// The group of enabled analyzers without the Go binary one, which
	// reads any executable and declares no static paths.
	disabled := slices.Concat(disabledAnalyzers(), []analyzer.Type{analyzer.TypeGoBinary})
	g, err := analyzer.NewAnalyzerGroup(analyzer.AnalyzerOptions{DisabledAnalyzers: disabled})
	if err != nil {
		return nil, err
	}
	paths, ok := g.StaticPaths(disabled)
	if !ok {
		return nil, errors.New("an enabled package or OS analyzer declares no static paths")
	}
	slices.Sort(paths)
	return paths, nil
})

// newLayerView reads (or loads from the cache) the index of every layer of
// img, models its filesystem and prepares the view.
func (s *Scanner) newLayerView(ctx context.Context, img v1.Image, name string, budget *decompressBudget) (*layerView, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading layers: %w", err)
	}
	if len(ls) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("the manifest has %d layers but the config %d diff_ids", len(ls), len(cf.RootFS.DiffIDs))
	}
	v := &layerView{base: img, name: name, layers: map[v1.Hash]*viewLayer{}}
	// Index reads get a budget of their own: the analysis reads new
	// layers a second time, and the limits are per pass.
	indexBudget := newBudget(budget.perLayer, budget.total)
	for i, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("layer %d digest: %w", i, err)
		}
		v.sources = append(v.sources, sourceLayer{layer: budget.wrap(l), digest: d, diffID: cf.RootFS.DiffIDs[i]})
	}
	v.indexes = make([]*layerIndex, len(ls))
	errs := make([]error, len(ls))
	sem := make(chan struct{}, s.o.parallel)
	var wg sync.WaitGroup
	for i, src := range v.sources {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			defer recoverTo(&errs[i], src.digest)
			v.indexes[i], errs[i] = s.cache.layerIndex(sourceLayer{layer: indexBudget.wrap(ls[i]), digest: src.digest, diffID: src.diffID})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	m := newFSModel()
	for i, idx := range v.indexes {
		links, err := m.apply(i, idx)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", v.sources[i].digest, err)
		}
		v.links = append(v.links, links)
	}
	sp, err := staticPaths()
	if err != nil {
		return nil, err
	}
	v.fixes = m.corrections(sp)

	v.config = cf.DeepCopy()
	v.config.RootFS.DiffIDs = nil
	for i := range v.sources {
		vl := &viewLayer{view: v, index: i, id: v.viewID(i)}
		v.add(vl)
	}
	if len(v.fixes) > 0 {
		v.add(&viewLayer{view: v, index: -1, id: v.viewID(-1)})
	}
	return v, nil
}

func (v *layerView) add(vl *viewLayer) {
	v.layers[vl.id] = vl
	v.order = append(v.order, vl)
	v.config.RootFS.DiffIDs = append(v.config.RootFS.DiffIDs, vl.id)
}

// viewID names view layer i (-1: the correction layer) for Trivy's cache.
// A layer without hard links is named by its own verified digest and
// diff_id; one with hard links, and the correction layer, also depend on
// the layers below (all of them).
func (v *layerView) viewID(i int) v1.Hash {
	var b strings.Builder
	fmt.Fprintf(&b, "slipway-layer-view v%d\n", viewVersion)
	switch {
	case i >= 0 && len(v.links[i]) == 0:
		fmt.Fprintf(&b, "%s %s\n", v.sources[i].digest, v.sources[i].diffID)
	default:
		n := i + 1
		if i < 0 {
			n = len(v.sources)
			b.WriteString("corrections\n")
		}
		for _, s := range v.sources[:n] {
			fmt.Fprintf(&b, "%s %s\n", s.digest, s.diffID)
		}
	}
	h := sha256.Sum256([]byte(b.String()))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}
}

// Name is what Trivy shows as the artifact name.
func (v *layerView) Name() string { return v.name }

// ID is the image ID: the config digest.
func (v *layerView) ID() (string, error) {
	h, err := v.base.ConfigName()
	if err != nil {
		return "", fmt.Errorf("config digest: %w", err)
	}
	return h.String(), nil
}

// RepoTags is empty: a locally assembled image has no tags yet.
func (v *layerView) RepoTags() []string { return nil }

// RepoDigests is empty.
func (v *layerView) RepoDigests() []string { return nil }

// ConfigFile is the image's config with the view's diff IDs.
func (v *layerView) ConfigFile() (*v1.ConfigFile, error) { return v.config.DeepCopy(), nil }

// Layers returns the view layers.
func (v *layerView) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(v.order))
	for i, l := range v.order {
		out[i] = l
	}
	return out, nil
}

// LayerByDiffID returns a view layer by its view diff ID.
func (v *layerView) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if l, ok := v.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no view layer %s", h)
}

// LayerByDigest is not used by Trivy's image analysis.
func (v *layerView) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	return nil, fmt.Errorf("layer by digest %s: not available in the scan view", h)
}

// MediaType, Size, ConfigName, RawConfigFile, Digest, Manifest and
// RawManifest are the base image's.
func (v *layerView) MediaType() (types.MediaType, error) { return v.base.MediaType() }
func (v *layerView) Size() (int64, error)                { return v.base.Size() }
func (v *layerView) ConfigName() (v1.Hash, error)        { return v.base.ConfigName() }
func (v *layerView) RawConfigFile() ([]byte, error)      { return v.base.RawConfigFile() }
func (v *layerView) Digest() (v1.Hash, error)            { return v.base.Digest() }
func (v *layerView) Manifest() (*v1.Manifest, error)     { return v.base.Manifest() }
func (v *layerView) RawManifest() ([]byte, error)        { return v.base.RawManifest() }
