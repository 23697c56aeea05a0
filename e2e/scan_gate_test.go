package e2e

import (
	"archive/tar"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipway-build/slipway/internal/testutil"
)

// TestScanGateCannotJudge: a base whose OS release the scanner does not
// know fails the gate (exit 1, "cannot judge: …", nothing pushed) unless
// scan.allow_unjudged names the reason; an unknown entry is a config
// error. A base layer whose config claims another diff_id fails the scan
// naming the layer.
func TestScanGateCannotJudge(t *testing.T) {
	reg := testutil.StartRegistry(t)
	db := fixtureDB(t)
	dir := t.TempDir()

	entry := func(n, body string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeReg}, body: body}
	}
	deb99 := rawLayer(t,
		entry("etc/os-release", "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"99\"\nID=debian\n"),
		entry("etc/debian_version", "99.1\n"),
		entry("var/lib/dpkg/status", "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n"+
			"Source: glibc\nVersion: 2.36-9+deb12u1\nDescription: libc6 package\n\n"))
	base99 := reg.Host + "/bases/debian99:v1"
	pushHostileBase(t, base99, deb99)

	config := func(base, extra string) {
		writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
base: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db: {dir: %s}
  cache_dir: %s
%s`, reg.Host, base, filepath.Join(repoRoot(), "testdata", "apps", "hello"), db, filepath.Join(dir, "scan-cache"), extra))
	}

	config(base99, "")
	r := slipway(t, dir, nil, "build", "--scan", "--push")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot judge: linux/amd64: ") || !strings.Contains(r.stderr, "unsupported-os") ||
		!strings.Contains(r.stderr, "scan.allow_unjudged") {
		t.Fatalf("debian 99: want exit 1, cannot judge, naming unsupported-os and scan.allow_unjudged\n%s", r)
	}
	repo, _ := name.NewRepository(reg.Host + "/team/hello")
	if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
		t.Fatalf("pushed although the gate could not judge: %v", tags)
	}

	config(base99, "  allow_unjudged: [unsupported-os]\n")
	if r := slipway(t, dir, nil, "build", "--scan", "--push"); r.code != 0 {
		t.Fatalf("allowed: %s", r)
	}

	config(base99, "  allow_unjudged: [maybe]\n")
	if r := slipway(t, dir, nil, "build", "--scan"); r.code != 2 || !strings.Contains(r.stderr, "scan.allow_unjudged[0]") {
		t.Fatalf("unknown entry: want exit 2 naming scan.allow_unjudged[0]\n%s", r)
	}

	// A base whose config claims the diff_id of another layer.
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), debianLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	other, _ := deb99.DiffID()
	cf.RootFS.DiffIDs[0] = other
	if img, err = mutate.ConfigFile(mutate.ConfigMediaType(img, types.OCIConfigJSON), cf); err != nil {
		t.Fatal(err)
	}
	liar := reg.Host + "/bases/liar:v1"
	ref, _ := name.ParseReference(liar)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	digest, _ := ls[0].Digest()
	config(liar, "")
	r = slipway(t, dir, nil, "build", "--scan")
	if r.code != 1 || !strings.Contains(r.stderr, "layer "+digest.String()) || !strings.Contains(r.stderr, "claims diff_id "+other.String()) {
		t.Fatalf("lying base: want exit 1 naming layer %s and the claimed diff_id\n%s", digest, r)
	}
}
