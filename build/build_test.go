package build

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestParsePlatform(t *testing.T) {
	for _, c := range []struct {
		in      string
		ok      bool
		variant string
	}{
		{"linux/amd64", true, ""},
		{"linux/arm64", true, ""},
		{"linux/arm/v7", true, "v7"},
		{"linux/arm/v6", true, "v6"},
		{"linux/amd64/v3", true, "v3"},
		{"linux/arm/v9", false, ""},
		{"linux/sparc", false, ""},
		{"linux", false, ""},
		{"darwin/arm64", false, ""},
		{"windows/amd64", false, ""},
		{"windows/arm64", false, ""},
		{"linux/s390x/v2", false, ""},
	} {
		p, err := ParsePlatform(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParsePlatform(%q) err = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if c.ok && p.Variant != c.variant {
			t.Errorf("ParsePlatform(%q).Variant = %q", c.in, p.Variant)
		}
	}
	env, err := platformEnv(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	if err != nil || !strings.Contains(strings.Join(env, " "), "GOARM=7") {
		t.Fatalf("linux/arm/v7 env = %v, %v", env, err)
	}
}

// testRegistry starts ggcr's in-memory registry.
func testRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// pushBase pushes an index with an image per platform (and an attestation
// manifest with platform unknown/unknown) and returns its tag.
func pushBase(t *testing.T, host string, mt types.MediaType, plats ...string) name.Tag {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, mt)
	var adds []mutate.IndexAddendum
	for _, ps := range plats {
		p, err := v1.ParsePlatform(ps)
		if err != nil {
			t.Fatal(err)
		}
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Config.Env = []string{"PATH=/usr/bin:/bin", "BASE=1"}
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		if mt == types.OCIImageIndex {
			img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	att, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	idx = mutate.AppendManifests(idx, adds...)
	tag, err := name.NewTag(host + "/base:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	return tag
}

func workerTarget(t *testing.T, plats ...string) Target {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	tg := Target{
		Name:    "worker",
		Dir:     filepath.Join(filepath.Dir(filepath.Dir(file)), "testdata", "apps", "hello"),
		Main:    "./cmd/worker",
		Created: time.Unix(1700000000, 0),
	}
	for _, s := range plats {
		p, err := ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		tg.Platforms = append(tg.Platforms, p)
	}
	return tg
}

func TestBuildOnRegistryBase(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	ctx := context.Background()
	host := testRegistry(t)
	tag := pushBase(t, host, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	base, err := ResolveBase(ctx, tag.String())
	if err != nil {
		t.Fatal(err)
	}
	want, err := remote.Head(tag)
	if err != nil {
		t.Fatal(err)
	}
	if base.Digest != want.Digest {
		t.Fatalf("resolved %s, registry has %s", base.Digest, want.Digest)
	}
	g, err := New(WithJobs(2), WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := workerTarget(t, "linux/amd64", "linux/arm64")
	tg.Base = base
	res, err := g.Build(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(res.Index); err != nil {
		t.Fatal(err)
	}
	im, err := res.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests", im.MediaType, len(im.Manifests))
	}
	if im.Annotations[AnnotationBaseDigest] != base.Digest.String() || im.Annotations[AnnotationBaseName] != tag.Name() {
		t.Fatalf("index annotations = %v", im.Annotations)
	}
	for _, pi := range res.Images {
		m, err := pi.Image.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Annotations[AnnotationBaseDigest] != pi.BaseDigest || pi.BaseDigest == "" {
			t.Fatalf("%s: base digest annotation %q, base manifest %q", PlatformString(pi.Platform), m.Annotations[AnnotationBaseDigest], pi.BaseDigest)
		}
		if len(m.Layers) != 3 { // two base layers + the binary
			t.Fatalf("%s: %d layers", PlatformString(pi.Platform), len(m.Layers))
		}
		cf, _ := pi.Image.ConfigFile()
		if !strings.Contains(strings.Join(cf.Config.Env, " "), "BASE=1") || cf.Config.User != DefaultUser {
			t.Fatalf("config env=%v user=%q", cf.Config.Env, cf.Config.User)
		}
	}
}

func TestBuildBaseMissingPlatform(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t)
	tag := pushBase(t, host, types.OCIImageIndex, "linux/amd64")
	base, err := ResolveBase(ctx, tag.String())
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := workerTarget(t, "linux/amd64", "linux/arm64", "linux/arm/v7")
	tg.Base = base
	_, err = g.Build(ctx, tg)
	if err == nil || !strings.Contains(err.Error(), "linux/arm64, linux/arm/v7") || !strings.Contains(err.Error(), "it has: linux/amd64") {
		t.Fatalf("err = %v, want the missing platforms named", err)
	}
}

func TestBuildDockerBase(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	ctx := context.Background()
	host := testRegistry(t)
	tag := pushBase(t, host, types.DockerManifestList, "linux/amd64")
	base, err := ResolveBase(ctx, tag.String())
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := workerTarget(t, "linux/amd64")
	tg.Base = base
	res, err := g.Build(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := res.Index.MediaType()
	imt, _ := res.Images[0].Image.MediaType()
	if mt != types.DockerManifestList || imt != types.DockerManifestSchema2 {
		t.Fatalf("media types %s / %s, want Docker's", mt, imt)
	}
	if err := validate.Index(res.Index); err != nil {
		t.Fatal(err)
	}
}

func TestBuildErrorVerbatim(t *testing.T) {
	g, err := New(WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := workerTarget(t, "linux/amd64")
	tg.Main = "./cmd/missing"
	tg.Base, _ = ResolveBase(context.Background(), Scratch)
	_, err = g.Build(context.Background(), tg)
	var gbe *GoBuildError
	if !errors.As(err, &gbe) || !strings.Contains(gbe.Output, "cmd/missing") {
		t.Fatalf("err = %v, want the go command's output", err)
	}
}

// BenchmarkBuildCached measures slipway's own work around the compiler:
// binary cache lookup (source tree hash), layers, image and index assembly,
// for two platforms on scratch with the CA layer.
func BenchmarkBuildCached(b *testing.B) {
	g, err := New(WithBinaryCache(b.TempDir()), WithCACertificates(CASystem))
	if err != nil {
		b.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	tg := Target{
		Name:    "hello",
		Dir:     filepath.Join(filepath.Dir(filepath.Dir(file)), "testdata", "apps", "hello"),
		Main:    "./cmd/hello",
		Created: time.Unix(1700000000, 0),
	}
	for _, s := range []string{"linux/amd64", "linux/arm64"} {
		p, _ := ParsePlatform(s)
		tg.Platforms = append(tg.Platforms, p)
	}
	tg.Base, _ = ResolveBase(context.Background(), Scratch)
	if _, err := g.Build(context.Background(), tg); err != nil { // fill the cache
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := g.Build(context.Background(), tg)
		if err != nil {
			b.Fatal(err)
		}
		if !res.Images[0].Cached {
			b.Fatal("binary cache missed")
		}
	}
}

func TestOpenLayoutRef(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := random.Image(64, 1)
	b, _ := random.Image(64, 1)
	if err := p.AppendImage(a); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(b, layout.WithAnnotations(map[string]string{"kind": "signature"})); err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	if _, _, err := OpenLayoutRef("oci:"+dir, nil); err == nil || !strings.Contains(err.Error(), "several manifests") {
		t.Fatalf("two manifests, no digest: err = %v", err)
	}
	_, d, err := OpenLayoutRef("oci:"+dir, func(d v1.Descriptor) bool { return d.Annotations["kind"] == "signature" })
	if err != nil || d.Digest != da {
		t.Fatalf("with skip: %v %v", d.Digest, err)
	}
	if _, d, err := OpenLayoutRef("oci:"+dir+"@"+da.String(), nil); err != nil || d.Digest != da {
		t.Fatalf("by digest: %v %v", d.Digest, err)
	}
	if _, _, err := OpenLayoutRef("oci:"+dir+"@sha256:"+strings.Repeat("1", 64), nil); err == nil {
		t.Fatal("missing digest found")
	}
	base, err := ResolveBase(context.Background(), "oci:"+dir+"@"+da.String())
	if err != nil || base.Digest != da {
		t.Fatalf("ResolveBase: %v", err)
	}
}
