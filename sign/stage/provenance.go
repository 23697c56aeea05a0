package stage

import (
	"archive/tar"
	"bytes"
	"cmp"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
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
			"base":      j.BaseRef,
			"tags":      j.Tags,
		},
		GoVersion:  bi.goVersion,
		LDFlags:    cmp.Or(bi.ldflags, strings.Join(append([]string{"-s", "-w"}, j.Target.Ldflags...), " ")),
		BuildFlags: bi.flags,
	}
	if j.Git.Commit != "" {
		uri := j.Git.Remote
		if uri != "" && !strings.HasPrefix(uri, "git+") {
			uri = "git+" + uri
		}
		p.Source = &sign.Source{URI: uri, Commit: j.Git.Commit, Dirty: j.Git.Dirty}
	}
	if res.Base.Digest != "" {
		if h, err := v1.NewHash(res.Base.Digest); err == nil {
			p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: j.BaseRef, Digest: h})
		}
		for _, pi := range res.Images {
			if h, err := v1.NewHash(pi.BaseDigest); err == nil {
				p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: j.BaseRef, Digest: h, Platform: build.PlatformString(pi.Platform)})
			}
		}
	}
	return p, nil
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
