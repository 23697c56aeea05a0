package e2e

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/slipway-build/slipway/internal/testutil"
)

// vcsBuild is what one build in a checkout produced.
type vcsBuild struct {
	digest      string // the index
	cached      bool   // the binary came from slipway's binary cache
	label       string // the "dirty" label: {{.Git.Dirty}}
	modified    string // vcs.modified stamped in the binary
	provenance  string // internalParameters.dirty of the provenance attestation
	gitStatus   string // git status --porcelain after the build
	ignoreWrote bool   // dist/.gitignore exists
}

func (b vcsBuild) String() string {
	return fmt.Sprintf("digest=%s cached=%v label=%s vcs.modified=%s provenance.dirty=%s status=%q", b.digest, b.cached, b.label, b.modified, b.provenance, b.gitStatus)
}

// buildInCheckout runs slipway build --sign in dir (default dist/oci) and
// reads back what it wrote.
func buildInCheckout(t *testing.T, dir string) vcsBuild {
	t.Helper()
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=slipway-test-password"}, "build", "--sign", "--output-json", filepath.Join(t.TempDir(), "r.json"))
	if r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	var res struct {
		Targets []struct {
			Digest string
			Cached []string
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "dist", "slipway-results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res.Targets) != 1 {
		t.Fatalf("results: %v\n%s", err, b)
	}
	out := vcsBuild{digest: res.Targets[0].Digest, gitStatus: testutil.Git(t, dir, "status", "--porcelain")}
	for _, c := range res.Targets[0].Cached {
		out.cached = out.cached || c == "build"
	}
	_, err = os.Stat(filepath.Join(dir, "dist", ".gitignore"))
	out.ignoreWrote = err == nil

	p, err := layout.FromPath(filepath.Join(dir, "dist", "oci"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(out.digest)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	img := platformImage(t, idx, h)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	out.label = cf.Config.Labels["dirty"]
	out.modified = binarySetting(t, img, "app/hello", "vcs.modified")
	out.provenance = provenanceDirty(t, idx, h)
	return out
}

// platformImage is the one platform image of the index with digest h.
func platformImage(t *testing.T, root v1.ImageIndex, h v1.Hash) v1.Image {
	t.Helper()
	idx, err := root.ImageIndex(h)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index %s: %v", h, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// binarySetting reads a build setting of the Go binary at path in img
// ("" when it has none).
func binarySetting(t *testing.T, img v1.Image, path, key string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Name != path {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			bi, err := buildinfo.Read(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range bi.Settings {
				if s.Key == key {
					return s.Value
				}
			}
			return ""
		}
		rc.Close()
	}
	t.Fatalf("no %s in the image", path)
	return ""
}

// provenanceDirty reads internalParameters.dirty from the provenance
// attestation of the index h in the layout.
func provenanceDirty(t *testing.T, root v1.ImageIndex, h v1.Hash) string {
	t.Helper()
	im, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != fmt.Sprintf("%s-%s.att", h.Algorithm, h.Hex) {
			continue
		}
		img, err := root.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			var env struct{ Payload string }
			if err := json.Unmarshal(b, &env); err != nil {
				continue
			}
			payload, err := base64.StdEncoding.DecodeString(env.Payload)
			if err != nil {
				continue
			}
			var st struct {
				PredicateType string `json:"predicateType"`
				Predicate     struct {
					BuildDefinition struct {
						InternalParameters map[string]any `json:"internalParameters"`
					} `json:"buildDefinition"`
				} `json:"predicate"`
			}
			if json.Unmarshal(payload, &st) != nil || !strings.Contains(st.PredicateType, "slsa.dev/provenance") {
				continue
			}
			return fmt.Sprint(st.Predicate.BuildDefinition.InternalParameters["dirty"])
		}
	}
	t.Fatalf("no provenance attestation for %s", h)
	return ""
}

// Issue 9 item 10: in a checkout that does not ignore dist/, slipway's own
// output does not change the next build: the first build, the second and
// a build in another clone of the same commit give one digest, a rerun is
// a binary-cache hit, and {{.Git.Dirty}}, the provenance and the binary's
// vcs.modified agree on every tree state.
func TestRebuildInGitCheckout(t *testing.T) {
	app := copyApp(t, "hello")
	os.Remove(filepath.Join(app, "slipway.yaml"))
	writeFile(t, app, "slipway.yaml", fmt.Sprintf(`platforms: [linux/amd64]
targets:
  - name: hello
    main: ./cmd/hello
    image:
      labels: {dirty: "{{.Git.Dirty}}"}
sign:
  key: %s
  attestations: [provenance]
`, filepath.Join(repoRoot(), "testdata", "keys", "cosign.key")))
	testutil.Git(t, app, "init", "-q")
	testutil.Git(t, app, "add", "-A")
	testutil.Git(t, app, "commit", "-qm", "hello")

	agree := func(b vcsBuild, dirty string) {
		t.Helper()
		if b.label != dirty || b.modified != dirty || b.provenance != dirty {
			t.Fatalf("want dirty=%s everywhere: %s", dirty, b)
		}
	}
	first := buildInCheckout(t, app)
	if !first.ignoreWrote || first.gitStatus != "" {
		t.Fatalf("slipway's output shows in the checkout: %s", first)
	}
	agree(first, "false")
	second := buildInCheckout(t, app)
	if second.digest != first.digest || !second.cached {
		t.Fatalf("rerun of the same commit:\nfirst  %s\nsecond %s", first, second)
	}
	agree(second, "false")

	clone := filepath.Join(t.TempDir(), "clone")
	testutil.Git(t, app, "clone", "-q", app, clone)
	if other := buildInCheckout(t, clone); other.digest != first.digest {
		t.Fatalf("another clone of the same commit:\nfirst %s\nclone %s", first, other)
	}

	// An untracked file, then a modified tracked file: dirty everywhere.
	writeFile(t, app, "notes.txt", "x")
	agree(buildInCheckout(t, app), "true")
	os.Remove(filepath.Join(app, "notes.txt"))
	writeFile(t, app, "go.mod", "module example.com/hello\n\ngo 1.26\n\n// edited\n")
	edited := buildInCheckout(t, app)
	agree(edited, "true")
	// Back to the commit: the first build again, from the cache.
	testutil.Git(t, app, "checkout", "--", "go.mod")
	again := buildInCheckout(t, app)
	agree(again, "false")
	if again.digest != first.digest || !again.cached {
		t.Fatalf("back to the commit:\nfirst %s\nnow   %s", first, again)
	}
}
