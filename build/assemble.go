package build

import (
	"fmt"
	"maps"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation keys slipway sets (image-spec annotations.md).
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
	AnnotationCreated    = "org.opencontainers.image.created"
	AnnotationRevision   = "org.opencontainers.image.revision"
	AnnotationSource     = "org.opencontainers.image.source"
	AnnotationVersion    = "org.opencontainers.image.version"
	AnnotationTitle      = "org.opencontainers.image.title"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// appImage appends the application layers to base and sets the runtime
// config. binary is the path of the compiled program on the build machine;
// caBundle, when not nil, is added at CACertsPath; extra holds the scratch
// runtime and static files layers, built once for every platform.
func appImage(t Target, base v1.Image, baseDigest string, p v1.Platform, binary string, caBundle []byte, extra extraLayers, oci bool) (v1.Image, error) {
	layerMT, created := types.OCILayer, t.Created.UTC()
	if !oci {
		layerMT = types.DockerLayer
	}
	var adds []mutate.Addendum
	if caBundle != nil {
		l, err := reproducibleLayer([]layerFile{fileFromBytes(caBundle, CACertsPath, 0o644)}, created, layerMT)
		if err != nil {
			return nil, fmt.Errorf("building CA certificates layer: %w", err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: layerMT, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "slipway: CA certificates " + CACertsPath, Comment: "slipway",
		}})
	}
	if extra.scratch != nil {
		adds = append(adds, mutate.Addendum{Layer: extra.scratch, MediaType: layerMT, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "slipway: scratch runtime files (" + scratchSummary(t.Image.Scratch) + ")", Comment: "slipway",
		}})
	}
	if extra.static != nil {
		adds = append(adds, mutate.Addendum{Layer: extra.static, MediaType: layerMT, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "slipway: static files", Comment: "slipway",
		}})
	}
	binPath := path.Join(AppDir, t.Name)
	l, err := reproducibleLayer([]layerFile{fileFromDisk(binary, binPath, 0o755)}, created, layerMT)
	if err != nil {
		return nil, fmt.Errorf("building application layer: %w", err)
	}
	adds = append(adds, mutate.Addendum{Layer: l, MediaType: layerMT, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "slipway build " + t.Main, Comment: "slipway",
	}})
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	if p.Architecture == "arm64" && cf.Variant == "" {
		cf.Variant = "v8"
	}
	cfg := &cf.Config
	cfg.Entrypoint = []string{binPath}
	cfg.Cmd = t.Image.Args
	cfg.User = t.Image.User
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if t.Image.Workdir != "" {
		cfg.WorkingDir = t.Image.Workdir
	} else if cfg.WorkingDir == "" {
		cfg.WorkingDir = "/"
	}
	env := t.Image.Env
	if extra.koData {
		if _, set := env[KoDataEnv]; !set {
			env = maps.Clone(env)
			if env == nil {
				env = map[string]string{}
			}
			env[KoDataEnv] = KoDataPath
		}
	}
	cfg.Env = mergeEnv(cfg.Env, env)
	if t.Image.Healthcheck != nil {
		hc := *t.Image.Healthcheck
		hc.Test = append([]string(nil), hc.Test...)
		cfg.Healthcheck = &hc
	}
	if len(t.Image.Ports) > 0 {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, port := range t.Image.Ports {
			if !strings.Contains(port, "/") {
				port += "/tcp"
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	if len(t.Image.Labels) > 0 {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for k, v := range t.Image.Labels {
			cfg.Labels[k] = v
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	if !oci {
		return img, nil
	}
	ann := t.annotations(created)
	if baseDigest != "" {
		ann[AnnotationBaseName] = t.Base.Ref
		ann[AnnotationBaseDigest] = baseDigest
	}
	return mutate.Annotations(img, ann).(v1.Image), nil
}

// extraLayers are the layers besides the binary's and the CA bundle's,
// built once per Build and shared by its platforms (nil when absent).
type extraLayers struct {
	scratch, static v1.Layer
	koData          bool // a kodata directory was found: set KO_DATA_PATH
}

// newExtraLayers builds the scratch runtime and static files layers of
// the entries given (none: no layer).
func newExtraLayers(t Target, scratch, static []layerFile, koData, oci bool) (extraLayers, error) {
	mt := types.OCILayer
	if !oci {
		mt = types.DockerLayer
	}
	x := extraLayers{koData: koData}
	var err error
	if len(scratch) > 0 {
		if x.scratch, err = reproducibleLayer(scratch, t.Created.UTC(), mt); err != nil {
			return x, fmt.Errorf("building scratch runtime layer: %w", err)
		}
	}
	if len(static) > 0 {
		if x.static, err = reproducibleLayer(static, t.Created.UTC(), mt); err != nil {
			return x, fmt.Errorf("building static files layer: %w", err)
		}
	}
	return x, nil
}

// scratchSummary names the chosen scratch files, for the layer history.
func scratchSummary(s ScratchFiles) string {
	var parts []string
	if s.Zoneinfo {
		parts = append(parts, "zoneinfo")
	}
	if s.Passwd {
		parts = append(parts, "passwd")
	}
	if s.Tmp {
		parts = append(parts, "tmp")
	}
	return strings.Join(parts, ", ")
}

// annotations are the OCI annotations set on every manifest and the index.
func (t Target) annotations(created time.Time) map[string]string {
	ann := map[string]string{
		AnnotationCreated: created.Format(time.RFC3339),
		AnnotationTitle:   t.Name,
	}
	if t.Revision != "" {
		ann[AnnotationRevision] = t.Revision
	}
	if t.Source != "" {
		ann[AnnotationSource] = t.Source
	}
	if t.Version != "" {
		ann[AnnotationVersion] = t.Version
	}
	for k, v := range t.Image.Annotations {
		ann[k] = v
	}
	return ann
}

// mergeEnv overlays extra on the base environment, keeps the base order for
// existing keys, appends new keys sorted, and puts AppDir on PATH.
func mergeEnv(base []string, extra map[string]string) []string {
	out := append([]string(nil), base...)
	index := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	set := func(k, v string) {
		if i, ok := index[k]; ok {
			out[i] = k + "=" + v
			return
		}
		index[k] = len(out)
		out = append(out, k+"="+v)
	}
	if i, ok := index["PATH"]; ok {
		_, v, _ := strings.Cut(out[i], "=")
		if !strings.Contains(":"+v+":", ":"+AppDir+":") {
			set("PATH", v+":"+AppDir)
		}
	} else {
		set("PATH", defaultPath+":"+AppDir)
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, extra[k])
	}
	return out
}

// assembleIndex puts the per-platform images into an index whose media
// type follows the base (OCI or Docker).
func assembleIndex(t Target, imgs []PlatformImage, oci bool) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = empty.Index
	if oci {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	} else {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for _, pi := range imgs {
		cf, err := pi.Image.ConfigFile()
		if err != nil {
			return nil, err
		}
		p := pi.Platform
		p.OSVersion, p.OSFeatures = cf.OSVersion, cf.OSFeatures
		if p.Architecture == "arm64" && p.Variant == "" {
			p.Variant = "v8"
		}
		adds = append(adds, mutate.IndexAddendum{Add: pi.Image, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	if oci {
		ann := t.annotations(t.Created.UTC())
		if !t.Base.IsScratch() {
			ann[AnnotationBaseName] = t.Base.Ref
			ann[AnnotationBaseDigest] = t.Base.Digest.String()
		}
		idx = mutate.Annotations(idx, ann).(v1.ImageIndex)
	}
	return idx, nil
}

// Assemble puts t's platform images into its index and describes the
// result: Build's last step, and a merge's, whose images were built
// elsewhere (the shards of run --from). imgs are in the order of
// t.Platforms and t.Base is set (its Ref and Digest are annotated; OCI or
// Docker media types as the base's), so the same images and target give
// the same digest as a Build of every platform on one machine.
func Assemble(t Target, imgs []PlatformImage) (*Result, error) {
	if t.Base == nil {
		return nil, fmt.Errorf("target %s: no base image", t.Name)
	}
	idx, err := assembleIndex(t, imgs, t.Base.OCI())
	if err != nil {
		return nil, fmt.Errorf("assembling index: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing index digest: %w", err)
	}
	res := &Result{Target: t.Name, Index: idx, Digest: d, Images: imgs, Base: BaseInfo{Name: t.Base.Name}}
	if !t.Base.IsScratch() {
		res.Base.Digest = t.Base.Digest.String()
	}
	return res, nil
}
