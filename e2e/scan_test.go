package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/internal/testutil"
)

// TestScanCommand scans a layout image with `slipway scan`: the gate
// decides the exit code, the JSON report holds every finding.
func TestScanCommand(t *testing.T) {
	dir := t.TempDir()
	db := fixtureDB(t)
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`platforms: [linux/amd64]
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: cache
`, filepath.Join(repoRoot(), "testdata", "vulnapp"), db))
	if r := slipway(t, dir, nil, "build", "--oci-layout", "out"); r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	r := slipway(t, dir, nil, "scan", "oci:out", "--format", "json", "--output", "report.json")
	if r.code != 3 || !strings.Contains(r.stderr, "CVE-2022-32149") {
		t.Fatalf("scan: want exit 3 with the finding\n%s", r)
	}
	var rep struct {
		Findings []struct{ ID, Severity string }
		DB       struct{ SchemaVersion int }
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.DB.SchemaVersion != 2 || len(rep.Findings) == 0 {
		t.Fatalf("report: %v %s", err, b)
	}
	// Only CRITICAL fails the gate now: the HIGH finding stays in the report.
	r = slipway(t, dir, nil, "scan", "oci:out", "--severity", "CRITICAL", "--format", "sarif", "--output", "report.sarif")
	if r.code != 0 {
		t.Fatalf("scan --severity CRITICAL: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "report.sarif")); !strings.Contains(string(b), "CVE-2022-32149") {
		t.Fatalf("SARIF lacks the finding")
	}

	// Two slipway processes scanning at once with one fresh cache dir.
	writeFile(t, dir, "slipway.yaml", strings.Replace(mustRead(t, filepath.Join(dir, "slipway.yaml")), "cache_dir: cache", "cache_dir: shared-cache", 1))
	results := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() { results <- slipway(t, dir, nil, "scan", "oci:out", "--severity", "CRITICAL") }()
	}
	for i := 0; i < 2; i++ {
		if r := <-results; r.code != 0 || !strings.Contains(r.stderr, "CVE-2022-32149") {
			t.Fatalf("concurrent scan %d: %s", i, r)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBaseLayersMounted: pushing an image built on a base in the same
// registry mounts the base layers instead of uploading them, and
// --image-refs records the pushed reference.
func TestBaseLayersMounted(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cf)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	base, _ := name.NewTag(proxy.Host + "/library/base:1")
	if err := remote.WriteIndex(base, idx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
base: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
`, proxy.Host, base, filepath.Join(repoRoot(), "testdata", "apps", "hello")))
	proxy.Reset()
	r := slipway(t, dir, nil, "build", "--push", "--image-refs", "refs.txt")
	if r.code != 0 {
		t.Fatalf("build --push: %s", r)
	}
	var mounted int
	for _, q := range proxy.Mounts() {
		if v, err := url.ParseQuery(q); err == nil && v.Get("from") == "library/base" {
			mounted++
		}
	}
	if mounted < 2 {
		t.Fatalf("%d base layers mounted from library/base, want 2\n%s", mounted, proxy)
	}
	refs, err := os.ReadFile(filepath.Join(dir, "refs.txt"))
	if err != nil || strings.TrimSpace(string(refs)) != strings.TrimSpace(r.stdout) {
		t.Fatalf("--image-refs = %q (%v), stdout %q", refs, err, r.stdout)
	}
}
