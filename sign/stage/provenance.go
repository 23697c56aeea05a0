package stage

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
)

// Provenance's builder and build type.
const (
	builderRepo = "https://github.com/slipway-build/slipway"
	buildType   = "https://github.com/slipway-build/slipway/build-types/go-image/v1"
)

// provenance describes how res was built, for the SLSA attestation. The Go
// version and build flags are those recorded in the binaries themselves.
func (s *Signer) provenance(j pipeline.Job, res *build.Result) (sign.Provenance, error) {
	var cfgTarget pipeline.Target
	for _, t := range s.o.targets {
		if t.Name == j.Target.Name {
			cfgTarget = t
		}
	}
	// The build environment can carry credentials (GOPRIVATE tokens,
	// GOPROXY with a password): provenance records variable names only.
	env := make([]string, len(cfgTarget.Env))
	for i, kv := range cfgTarget.Env {
		k, _, _ := strings.Cut(kv, "=")
		env[i] = k
	}
	cfgTarget.Env = env
	// Local paths are recorded relative to the repository: the same
	// source gives the same provenance on any checkout, and it says
	// nothing of the machine's directories.
	m := s.paths(j)
	cfgTarget.Dir = m.dir(cfgTarget.Dir, j.Target.Dir)
	if filepath.IsAbs(cfgTarget.Main) {
		cfgTarget.Main = moduleRelative(j.Target.Dir, cfgTarget.Main)
	}
	cfgTarget.Files = slices.Clone(cfgTarget.Files)
	for i := range cfgTarget.Files {
		resolved := ""
		if len(j.Target.Files) == len(cfgTarget.Files) {
			resolved = j.Target.Files[i].Src
		}
		cfgTarget.Files[i].Src = m.dir(cfgTarget.Files[i].Src, resolved)
	}
	cfgTarget.Base = m.baseRef(cfgTarget.Base)
	baseRef := m.baseRef(j.BaseRef)
	platforms := make([]string, len(j.Target.Platforms))
	for i, p := range j.Target.Platforms {
		platforms[i] = build.PlatformString(p)
	}
	bi, err := builtWith(res, j.Target.Name)
	if err != nil {
		return sign.Provenance{}, err
	}
	p := sign.Provenance{
		BuilderID: builderRepo + "@" + s.o.version,
		BuildType: buildType,
		ExternalParameters: map[string]any{
			"target":    cfgTarget,
			"platforms": platforms,
			"base":      baseRef,
			"tags":      j.Tags,
		},
		GoVersion:  bi.goVersion,
		LDFlags:    cmp.Or(bi.ldflags, strings.Join(append([]string{"-s", "-w"}, j.Target.Ldflags...), " ")),
		BuildFlags: bi.flags,
	}
	if j.Git.Commit != "" {
		uri := j.Git.Remote
		if isLocalRemote(uri) {
			uri = "" // a path on this machine names nothing elsewhere
		}
		if uri != "" && !strings.HasPrefix(uri, "git+") {
			uri = "git+" + uri
		}
		p.Source = &sign.Source{URI: uri, Commit: j.Git.Commit, Dirty: j.Git.Dirty}
	}
	if res.Base.Digest != "" {
		if h, err := v1.NewHash(res.Base.Digest); err == nil {
			p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: baseRef, Digest: h})
		}
		for _, pi := range res.Images {
			if h, err := v1.NewHash(pi.BaseDigest); err == nil {
				p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: baseRef, Digest: h, Platform: build.PlatformString(pi.Platform)})
			}
		}
	}
	return p, nil
}

// pathMapper makes the local paths recorded in attestations relative to
// the source root.
type pathMapper struct {
	root      string
	configDir string // "" when unknown: relative paths stay as written
}

// paths is the job's pathMapper (see WithSourceRoot).
func (s *Signer) paths(j pipeline.Job) pathMapper {
	if s.o.root != "" {
		return pathMapper{root: s.o.root, configDir: s.o.configDir}
	}
	root := j.Target.Dir
	if root != "" {
		root = pipeline.SourceRoot(context.Background(), root)
	}
	return pathMapper{root: root}
}

// path maps p (a path as configured): relative to the root when it is
// absolute or the config's directory is known, else as written.
func (m pathMapper) path(p string) string {
	if p == "" || m.root == "" || (!filepath.IsAbs(p) && m.configDir == "") {
		return filepath.ToSlash(p)
	}
	return pipeline.RelativeTo(m.root, m.configDir, p)
}

// dir maps a configured path whose resolved (absolute) form is resolved,
// when known.
func (m pathMapper) dir(configured, resolved string) string {
	if resolved != "" && m.root != "" && (filepath.IsAbs(configured) || m.configDir != "") {
		return pipeline.RelativeTo(m.root, "", resolved)
	}
	return m.path(configured)
}

// baseRef maps the directory of an "oci:DIR[@digest]" base; other
// references are returned as they are.
func (m pathMapper) baseRef(ref string) string {
	spec, ok := strings.CutPrefix(ref, build.LayoutPrefix)
	if !ok {
		return ref
	}
	dir, digest, hasDigest := strings.Cut(spec, "@")
	out := build.LayoutPrefix + m.path(dir)
	if hasDigest {
		out += "@" + digest
	}
	return out
}

// report returns r with the file named in each suppression (the ignore
// file of "FILE:ID", the VEX document of "vex:FILE"; FILE absolute) made
// relative to the root; r is not changed.
func (m pathMapper) report(r *scan.Report) *scan.Report {
	if r == nil {
		return nil
	}
	out := *r
	out.Findings = slices.Clone(r.Findings)
	for i, f := range out.Findings {
		if f.Suppressed == nil {
			continue
		}
		sup := *f.Suppressed
		if file, ok := strings.CutPrefix(sup.Rule, vexRulePrefix); ok && sup.Kind == scan.SuppressedByVEX {
			if filepath.IsAbs(file) {
				sup.Rule = vexRulePrefix + m.path(file)
			}
		} else if i := strings.LastIndexByte(sup.Rule, ':'); i > 0 && filepath.IsAbs(sup.Rule[:i]) {
			sup.Rule = m.path(sup.Rule[:i]) + sup.Rule[i:]
		}
		out.Findings[i].Suppressed = &sup
	}
	return &out
}

// vexRulePrefix starts the Rule of a VEX suppression: "vex:FILE".
const vexRulePrefix = "vex:"

// moduleRelative is main (absolute) as a package path relative to the
// module directory: "./cmd/hello".
func moduleRelative(moduleDir, main string) string {
	rel := pipeline.RelativeTo(moduleDir, "", main)
	if rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return rel
	}
	return "./" + rel
}

// isLocalRemote reports whether a git remote URL is a path on this
// machine (/srv/git/app.git, file:///…, ../app.git).
func isLocalRemote(uri string) bool {
	return strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "file:") || strings.HasPrefix(uri, ".") || strings.HasPrefix(uri, "~")
}

// goBuild is what provenance records of how the binaries were built.
type goBuild struct {
	goVersion string
	// ldflags is empty for binaries built with -trimpath (as slipway
	// builds them): go does not record -ldflags then, they may name paths.
	ldflags string
	flags   []string // the other go build flags, "-name=value"
}

// builtWith reads the build info of the binary in every platform image of
// res, and fails unless all platforms agree on the Go version and flags
// (one provenance describes them all).
func builtWith(res *build.Result, target string) (goBuild, error) {
	if len(res.Images) == 0 {
		return goBuild{}, errors.New("no platform images to describe")
	}
	var first goBuild
	for i, pi := range res.Images {
		bi, err := binaryBuildInfo(pi.Image, path.Join(build.AppDir, target))
		if err != nil {
			return goBuild{}, fmt.Errorf("%s: %w", build.PlatformString(pi.Platform), err)
		}
		gb := goBuild{goVersion: bi.GoVersion}
		for _, st := range bi.Settings {
			switch {
			case st.Key == "-ldflags":
				gb.ldflags = st.Value
			case strings.HasPrefix(st.Key, "-"):
				gb.flags = append(gb.flags, st.Key+"="+st.Value)
			}
		}
		if i == 0 {
			first = gb
		} else if gb.goVersion != first.goVersion || gb.ldflags != first.ldflags || !slices.Equal(gb.flags, first.flags) {
			return goBuild{}, fmt.Errorf("the binaries of %s and %s were built differently (%s %q %q, %s %q %q)",
				build.PlatformString(res.Images[0].Platform), build.PlatformString(pi.Platform),
				first.goVersion, first.ldflags, first.flags, gb.goVersion, gb.ldflags, gb.flags)
		}
	}
	return first, nil
}

// binaryBuildInfo reads the Go build info of the file at file (absolute)
// in img, from the topmost layer that has it.
func binaryBuildInfo(img v1.Image, file string) (*buildinfo.BuildInfo, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	name := strings.TrimPrefix(file, "/")
	for i := len(layers) - 1; i >= 0; i-- {
		b, found, err := readLayerFile(layers[i], name)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		bi, err := buildinfo.Read(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("reading the build info of %s: %w", file, err)
		}
		return bi, nil
	}
	return nil, fmt.Errorf("the image has no %s", file)
}

// readLayerFile reads the regular file name from layer l.
func readLayerFile(l v1.Layer, name string) ([]byte, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading layer: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg && path.Clean(hdr.Name) == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, false, fmt.Errorf("reading %s: %w", name, err)
			}
			return b, true, nil
		}
	}
}
