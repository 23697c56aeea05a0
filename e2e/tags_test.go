package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/publish"
)

// Issue 9 item 13: `slipway push oci:DIR` checks the target names and
// tags it reads from index.json like config names, and refuses before
// sending anything to the (real) registry.
func TestPushLayoutRefusesTraversalAndSignatureTags(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	idx, err := random.Index(256, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, target, tag string }{
		{"traversal", "../../escape", "latest"},
		{"signature tag", "hello", "sha256-" + strings.Repeat("d", 64) + ".sig"},
		{"attestation tag", "hello", "v1.att"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := publish.NewLayout(filepath.Join(dir, "out"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.WriteIndex("alpha", idx, []string{"latest"}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.WriteIndex(c.target, idx, []string{c.tag}); err != nil {
				t.Fatal(err)
			}
			proxy.Reset()
			r := slipway(t, dir, nil, "push", "oci:out", "--repository", proxy.Host+"/team")
			if r.code != 2 || !strings.Contains(r.stderr, filepath.Join("out", "index.json")) {
				t.Fatalf("push of a layout with target %q tag %q: want exit 2 naming index.json\n%s", c.target, c.tag, r)
			}
			for _, req := range proxy.Requests() {
				if req.Method != http.MethodGet && req.Method != http.MethodHead {
					t.Fatalf("a write reached the registry: %+v", req)
				}
			}
		})
	}
}

// Issue 9 item 13: a configured tag that looks like a signature tag is a
// config error before anything is built or written.
func TestSignatureLookingTagRefused(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", `targets:
  - name: hello
    dir: `+filepath.Join(repoRoot(), "testdata", "apps", "hello")+`
    main: ./cmd/hello
    tags: [latest, "sha256-{{.Env.DIGEST}}.sig"]
`)
	r := slipway(t, dir, []string{"DIGEST=" + strings.Repeat("e", 64)}, "build")
	if r.code != 2 || !strings.Contains(r.stderr, "targets[0].tags[1]") || !strings.Contains(r.stderr, "choose another tag") {
		t.Fatalf("want exit 2 naming targets[0].tags[1]\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "dist")); err == nil {
		t.Fatal("something was written to dist/")
	}
}
