package e2e

import (
	"fmt"
	"net/http"
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
	"github.com/slipway-build/slipway/internal/vulndb"
)

// signedPush builds and pushes hello, signed with a fresh key; it returns
// the work dir, the pushed reference and the key paths.
func signedPush(t *testing.T, host string) (dir, ref, key, pub string) {
	t.Helper()
	dir = t.TempDir()
	key, pub = demoKey(t, dir, "pw")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
sign:
  key: %s
`, host, filepath.Join(repoRoot(), "testdata", "apps", "hello"), key))
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "build", "--sign", "--push")
	if r.code != 0 {
		t.Fatalf("build --sign --push: %s", r)
	}
	return dir, strings.TrimSpace(r.stdout), key, pub
}

func TestVerifyExitCodes(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	dir, ref, _, pub := signedPush(t, proxy.Host)
	otherDir := t.TempDir()
	_, otherPub := demoKey(t, otherDir, "x")

	if r := slipway(t, dir, nil, "verify", ref, "--key", pub); r.code != 0 || strings.TrimSpace(r.stdout) != ref {
		t.Fatalf("verify signed: %s", r)
	}
	if r := slipway(t, dir, nil, "verify", ref, "--key", otherPub); r.code != 3 || r.stdout != "" {
		t.Fatalf("verify with another key: want exit 3 and nothing on stdout\n%s", r)
	}
	// An unsigned image in the same registry.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := proxy.Host + "/team/unsigned:1"
	tag, _ := name.NewTag(unsigned)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	if r := slipway(t, dir, nil, "verify", unsigned, "--key", pub); r.code != 3 || !strings.Contains(r.stderr, "policy not met") {
		t.Fatalf("verify unsigned: want exit 3\n%s", r)
	}
	// The registry fails on the signature tag: an operational error, exit 1.
	proxy.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		return false
	})
	if r := slipway(t, dir, nil, "verify", ref, "--key", pub); r.code != 1 {
		t.Fatalf("verify with the signature tag failing: want exit 1 (fail closed, not a pass)\n%s", r)
	}
	proxy.SetIntercept(nil)
	// JSON verdict.
	r := slipway(t, dir, nil, "verify", ref, "--key", pub, "--output", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"passed": true`) {
		t.Fatalf("verify --output json: %s", r)
	}
}

func TestWrongPasswordPushesNothing(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	key, _ := demoKey(t, dir, "right-password")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
sign:
  key: %s
`, reg.Host, filepath.Join(repoRoot(), "testdata", "apps", "hello"), key))
	const wrong = "wrong-password-sentinel-8c1f"
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=" + wrong}, "build", "--sign", "--push", "--verbose")
	if r.code != 1 || !strings.Contains(r.stderr, "wrong password") {
		t.Fatalf("want exit 1 naming the wrong password: %s", r)
	}
	if strings.Contains(r.stdout+r.stderr, wrong) {
		t.Fatalf("the password appears in the output")
	}
	registryHasNothing(t, reg)
}

func TestBasePolicy(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	key, pub := demoKey(t, dir, "pw")
	// Two bases: one signed with key, one unsigned.
	for _, n := range []string{"signed", "unsigned"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", "amd64"
		img, _ = mutate.ConfigFile(img, cf)
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
		tag, _ := name.NewTag(reg.Host + "/bases/" + n + ":1")
		if err := remote.WriteIndex(tag, idx); err != nil {
			t.Fatal(err)
		}
		if n == "signed" {
			d, _ := idx.Digest()
			writeFile(t, dir, "sign.yaml", "sign: {key: "+key+"}\n")
			r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "sign", "-c", "sign.yaml", tag.Context().Digest(d.String()).String())
			if r.code != 0 {
				t.Fatalf("signing the base: %s", r)
			}
		}
	}
	for _, c := range []struct {
		base string
		code int
	}{{"signed", 0}, {"unsigned", 3}} {
		writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`base: %s/bases/%s:1
base_policy: {keys: [%s]}
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
`, reg.Host, c.base, pub, filepath.Join(repoRoot(), "testdata", "apps", "hello")))
		r := slipway(t, dir, nil, "build", "--oci-layout", "out-"+c.base)
		if r.code != c.code {
			t.Fatalf("base %s: exit %d, want %d\n%s", c.base, r.code, c.code, r)
		}
	}
}

func TestScanDBErrorsAndPull(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	app := filepath.Join(repoRoot(), "testdata", "apps", "hello")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db:
    dir: db
    repositories: [%s, %s/trivy-db:2]
  cache_dir: cache
`, app, "127.0.0.1:1/unreachable/trivy-db:2", reg.Host))
	r := slipway(t, dir, nil, "build", "--scan")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "missing") {
		t.Fatalf("scan without a DB: want exit 1 saying the DB is missing\n%s", r)
	}
	registryHasNothing(t, reg)
	// Publish the fixture DB to the registry; db pull falls back past the
	// unreachable first repository.
	src := filepath.Join(t.TempDir(), "db")
	if err := vulndb.Build(filepath.Join(repoRoot(), "testdata", "vulndb"), src, nowish()); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/trivy-db:2")
	if _, err := vulndb.Push(t.Context(), src, ref); err != nil {
		t.Fatal(err)
	}
	if r := slipway(t, dir, nil, "db", "pull"); r.code != 0 || !strings.Contains(r.stdout, "schema version: 2") {
		t.Fatalf("db pull: %s", r)
	}
	if r := slipway(t, dir, nil, "db", "status"); r.code != 0 {
		t.Fatalf("db status: %s", r)
	}
	if r := slipway(t, dir, nil, "build", "--scan"); r.code != 0 {
		t.Fatalf("scan with the pulled DB: %s", r)
	}
}
