package trivy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// withHistory returns img with this history in its config.
func withHistory(t *testing.T, img v1.Image, h ...v1.History) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.History = h
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// countingCache counts the entries written through it.
type countingCache struct {
	*layerCache
	puts atomic.Int32
}

func (c *countingCache) PutBlob(ctx context.Context, id string, info ftypes.BlobInfo) error {
	c.puts.Add(1)
	return c.layerCache.PutBlob(ctx, id, info)
}

func (c *countingCache) PutArtifact(ctx context.Context, id string, info ftypes.ArtifactInfo) error {
	c.puts.Add(1)
	return c.layerCache.PutArtifact(ctx, id, info)
}

// cacheEntries reads every layer and image entry of a layer cache, by
// kind/name.
func cacheEntries(t *testing.T, c *layerCache) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, kind := range []string{"blob", "artifact"} {
		es, err := os.ReadDir(filepath.Join(c.dir, kind))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			b, err := os.ReadFile(filepath.Join(c.dir, kind, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[kind+"/"+e.Name()] = string(b)
		}
	}
	return out
}

// TestInspectMatchesTrivyImageArtifact: slipway's inspection writes the
// same cache entries, under the same keys, as Trivy's image artifact
// (pkg/fanal/artifact/image, which the binary no longer links) given the
// same view and options, so scan results are unchanged and caches written
// by earlier versions stay valid; and over a cache that artifact filled it
// writes nothing.
func TestInspectMatchesTrivyImageArtifact(t *testing.T) {
	bin := goBinary(t, "vulnapp")
	debian := debianFiles("amd64", vulnerableDebianPkgs)
	// A .deb that installed a Go binary: Trivy's sysfile post-handler drops
	// it from the applications.
	debWithBinary := append(debianFiles("amd64", append(vulnerableDebianPkgs, dpkg{"server", "", "1.0"})),
		file{name: "var/lib/dpkg/info/server.md5sums", data: []byte("0123456789abcdef0123456789abcdef  usr/bin/server\n")},
		file{name: "usr/bin/server", mode: 0o755, data: bin})
	alpine := []file{
		{name: "etc/alpine-release", data: []byte("3.19.1\n")},
		{name: "etc/os-release", data: []byte("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n")},
		{name: "etc/apk/repositories", data: []byte("https://dl-cdn.alpinelinux.org/alpine/v3.19/main\n")},
		{name: "lib/apk/db/installed", data: []byte("C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\n" +
			"S:407641\nI:667648\nT:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\n" +
			"m:Timo Teräs <timo.teras@iki.fi>\nt:1705323400\nc:c8e4ba7cdc2e4c8ac70a0a88ae5e1a1b22a4c1c3\nF:lib\nR:ld-musl-x86_64.so.1\n\n")},
	}
	goLayer := layer(t, file{name: "app/server", mode: 0o755, data: bin})

	cases := []struct {
		name string
		img  v1.Image
	}{
		{"no layers", image(t, amd64)},
		{"debian and a Go binary, history per layer", withHistory(t, image(t, amd64, layer(t, debian...), goLayer),
			v1.History{CreatedBy: "/bin/sh -c #(nop) ADD file:abc in / "},
			v1.History{CreatedBy: "/bin/sh -c #(nop)  CMD [\"bash\"]", EmptyLayer: true},
			v1.History{CreatedBy: "COPY app/server /app/server # buildkit"})},
		{"history that does not match the layers", withHistory(t, image(t, amd64, layer(t, debian...), goLayer),
			v1.History{CreatedBy: "/bin/sh -c only-one"})},
		{"Go binary a .deb installed", image(t, amd64, layer(t, debWithBinary...))},
		{"alpine", image(t, amd64, layer(t, alpine...), goLayer)},
		{"the same layer twice", image(t, amd64, goLayer, layer(t, debian...), goLayer)},
		{"whiteouts, opaque dir, hard link", image(t, amd64,
			rawLayer(t, entry{name: "app/"}, entry{name: "app/vuln", data: bin, mode: 0o755}, entry{name: "app/keep", hardlink: "app/vuln"}),
			rawLayer(t, entry{name: "app/.wh.vuln"}, entry{name: "srv/"}, entry{name: "srv/.wh..wh..opq"}))},
		{"correction layer", image(t, amd64,
			rawLayer(t, append(debianEntries("var/lib/dpkg/status"), entry{name: "srv/old-status", data: []byte("garbage")})...),
			rawLayer(t, entry{name: "var/lib/.wh.dpkg"}, entry{name: "var/lib/dpkg", symlink: "/opt/db"}, entry{name: "opt/db/status", data: debianStatus()}))},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			view := func(s *Scanner) *layerView {
				v, err := s.newLayerView(ctx, tc.img, "img", newBudget(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			theirs := newScanner(t, t.TempDir())
			art, err := artimage.NewArtifact(view(theirs), theirs.cache, theirs.artifactOption())
			if err != nil {
				t.Fatal(err)
			}
			ref, err := art.Inspect(ctx)
			if err != nil {
				t.Fatal(err)
			}

			ours := newScanner(t, t.TempDir())
			in, err := newInspector(ours.cache, ours.artifactOption())
			if err != nil {
				t.Fatal(err)
			}
			got, err := in.inspect(ctx, view(ours))
			if err != nil {
				t.Fatal(err)
			}
			if got.imageKey != ref.ID || !cmp.Equal(got.layerKeys, ref.BlobIDs) {
				t.Errorf("keys: ours %s %v, Trivy's %s %v", got.imageKey, got.layerKeys, ref.ID, ref.BlobIDs)
			}
			want := cacheEntries(t, theirs.cache)
			if len(want) == 0 {
				t.Fatal("Trivy's artifact wrote no cache entries")
			}
			if diff := cmp.Diff(want, cacheEntries(t, ours.cache)); diff != "" {
				t.Errorf("cache entries (-Trivy's +ours):\n%s", diff)
			}

			// Over the cache Trivy's artifact filled: same keys, nothing written.
			counted := &countingCache{layerCache: theirs.cache}
			in, err = newInspector(counted, theirs.artifactOption())
			if err != nil {
				t.Fatal(err)
			}
			again, err := in.inspect(ctx, view(theirs))
			if err != nil {
				t.Fatal(err)
			}
			if again.imageKey != ref.ID || !cmp.Equal(again.layerKeys, ref.BlobIDs) {
				t.Errorf("keys over Trivy's cache: %s %v", again.imageKey, again.layerKeys)
			}
			if n := counted.puts.Load(); n != 0 {
				t.Errorf("inspecting over Trivy's cache wrote %d entries", n)
			}
			if diff := cmp.Diff(want, cacheEntries(t, theirs.cache)); diff != "" {
				t.Errorf("inspecting over Trivy's cache changed it (-before +after):\n%s", diff)
			}
		})
	}
}

// TestInspectCanceled: an inspection whose context has ended fails and
// stores nothing, rather than an image entry without its layers.
func TestInspectCanceled(t *testing.T) {
	s := newScanner(t, t.TempDir())
	v, err := s.newLayerView(context.Background(), image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...)), "img", newBudget(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingCache{layerCache: s.cache}
	in, err := newInspector(counted, s.artifactOption())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.inspect(ctx, v); !errors.Is(err, context.Canceled) {
		t.Errorf("inspect = %v, want context.Canceled", err)
	}
	if n := counted.puts.Load(); n != 0 {
		t.Errorf("%d cache entries written", n)
	}
}
