package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/vulndb"
)

// fixtureDB builds the fixture vulnerability DB from testdata/vulndb.
func fixtureDB(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	if err := vulndb.Build(filepath.Join(repoRoot(), "testdata", "vulndb"), dir, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// demoKey writes a key pair with slipway keygen and returns the paths.
func demoKey(t *testing.T, dir, password string) (priv, pub string) {
	t.Helper()
	prefix := filepath.Join(dir, "cosign")
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=" + password}, "keygen", "--output-key-prefix", prefix)
	if r.code != 0 {
		t.Fatalf("keygen: %s", r)
	}
	return prefix + ".key", prefix + ".pub"
}

// pipelineConfig is a two-target config: hello (clean) and vuln
// (golang.org/x/text v0.3.7, CVE-2022-32149 HIGH).
func pipelineConfig(repo, db, key, pub, vulnDir, onFailure string) string {
	return fmt.Sprintf(`repository: %s
platforms: [linux/amd64, linux/arm64]
on_failure: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: %s
  reports: [{format: sarif, output: "reports/{{.Target}}.sarif"}]
sign:
  key: %s
  annotations: {target: "{{.Target}}"}
  attestations: [sbom, vuln, provenance]
policy:
  keys: [%s]
  require_attestations: [sbom, vuln, provenance]
  max_severity: HIGH
`, repo, onFailure, filepath.Join(repoRoot(), "testdata", "apps", "hello"), vulnDir, db, filepath.Join(filepath.Dir(db), "scan-cache"), key, pub)
}

// helloOnly drops the vuln target from a pipelineConfig.
func helloOnly(cfg string) string {
	return cfg[:strings.Index(cfg, "  - name: vuln")] + cfg[strings.Index(cfg, "scan:"):]
}

// registryHasNothing fails if the registry stored any blob, manifest or tag.
func registryHasNothing(t *testing.T, reg *testutil.Registry) {
	t.Helper()
	assertNoTags(t, reg)
	blobs := filepath.Join(reg.Root, "docker", "registry", "v2", "blobs")
	var n int
	filepath.Walk(blobs, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	if n != 0 {
		t.Fatalf("registry holds %d blobs", n)
	}
}

func TestScanGateBlocksPush(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	cfg := fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: %s
`, reg.Host, filepath.Join(repoRoot(), "testdata", "vulnapp"), db, filepath.Join(dir, "cache"))
	writeFile(t, dir, "slipway.yaml", cfg)
	r := slipway(t, dir, nil, "build", "--scan", "--push")
	if r.code != 3 {
		t.Fatalf("vulnerable app: exit %d, want 3\n%s", r.code, r)
	}
	if !strings.Contains(r.stderr, "CVE-2022-32149") || !strings.Contains(r.stderr, "golang.org/x/text") {
		t.Fatalf("finding not printed:\n%s", r.stderr)
	}
	registryHasNothing(t, reg)

	// The same app with the fixed version passes and is pushed.
	fixed := strings.Replace(cfg, "testdata/vulnapp\n", "testdata/vulnapp-fixed\n", 1)
	writeFile(t, dir, "slipway.yaml", fixed)
	r = slipway(t, dir, nil, "build", "--scan", "--push")
	if r.code != 0 {
		t.Fatalf("fixed app: %s", r)
	}
	ref := pushedRef(t, r.stdout, "vuln")
	if _, err := remote.Head(ref); err != nil {
		t.Fatalf("fixed app not in the registry: %v", err)
	}
}

func TestRunOnFailure(t *testing.T) {
	dir := t.TempDir()
	db := fixtureDB(t)
	key, pub := demoKey(t, dir, "s3cret-pw")
	vulnDir := filepath.Join(repoRoot(), "testdata", "vulnapp")
	env := []string{"COSIGN_PASSWORD=s3cret-pw"}

	t.Run("abort", func(t *testing.T) {
		reg := testutil.StartRegistry(t)
		writeFile(t, dir, "slipway.yaml", pipelineConfig(reg.Host+"/team", db, key, pub, vulnDir, "abort"))
		r := slipway(t, dir, env, "run", "--push", "--output-json", "results.json")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3\n%s", r.code, r)
		}
		registryHasNothing(t, reg)
		res := readResults(t, filepath.Join(dir, "results.json"))
		if res["hello"].Pushed || res["vuln"].Pushed || res["vuln"].Gate != "fail" || res["hello"].Gate != "pass" {
			t.Fatalf("results: %+v", res)
		}
	})
	t.Run("continue", func(t *testing.T) {
		reg := testutil.StartRegistry(t)
		writeFile(t, dir, "slipway.yaml", pipelineConfig(reg.Host+"/team", db, key, pub, vulnDir, "continue"))
		r := slipway(t, dir, env, "run", "--push", "--output-json", "results.json")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3\n%s", r.code, r)
		}
		res := readResults(t, filepath.Join(dir, "results.json"))
		if !res["hello"].Pushed || res["vuln"].Pushed {
			t.Fatalf("results: %+v", res)
		}
		v := slipway(t, dir, nil, "verify", res["hello"].Ref)
		if v.code != 0 || strings.TrimSpace(v.stdout) != res["hello"].Ref {
			t.Fatalf("verify hello: %s", v)
		}
		vulnRepo, _ := name.NewRepository(reg.Host + "/team/vuln")
		if tags, err := remote.List(vulnRepo); err == nil && len(tags) > 0 {
			t.Fatalf("vuln has tags: %v", tags)
		}
	})
}

// targetResult is the part of the results JSON the tests read.
type targetResult struct {
	Target     string         `json:"target"`
	Ref        string         `json:"ref"`
	Digest     string         `json:"digest"`
	Pushed     bool           `json:"pushed"`
	Gate       string         `json:"gate"`
	Findings   map[string]int `json:"findings"`
	Signatures []string       `json:"signatures"`
	Platforms  []struct {
		Platform, Digest string
	} `json:"platforms"`
	Timings map[string]float64 `json:"timings"`
}

func readResults(t *testing.T, path string) map[string]targetResult {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Targets []targetResult }
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	out := map[string]targetResult{}
	for _, tr := range res.Targets {
		out[tr.Target] = tr
	}
	return out
}

func TestRunCleanAndRerun(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	dir := t.TempDir()
	db := fixtureDB(t)
	key, pub := demoKey(t, dir, "pw")
	cfg := helloOnly(pipelineConfig(proxy.Host+"/team", db, key, pub, "", "abort"))
	writeFile(t, dir, "slipway.yaml", cfg)
	ghOut, ghSum := filepath.Join(dir, "gh-output"), filepath.Join(dir, "gh-summary")
	env := []string{"COSIGN_PASSWORD=pw", "GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + ghOut, "GITHUB_STEP_SUMMARY=" + ghSum}
	r := slipway(t, dir, env, "run", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	res := readResults(t, filepath.Join(dir, "results.json"))["hello"]
	if len(res.Platforms) != 2 || res.Findings["HIGH"] != 0 || res.Findings["CRITICAL"] != 0 || len(res.Signatures) == 0 || res.Gate != "pass" {
		t.Fatalf("results: %+v", res)
	}
	v := slipway(t, dir, nil, "verify", res.Ref)
	if v.code != 0 {
		t.Fatalf("verify: %s", v)
	}
	out, _ := os.ReadFile(ghOut)
	if !strings.Contains(string(out), "hello-digest="+res.Digest) || !strings.Contains(string(out), "hello-ref="+res.Ref) {
		t.Fatalf("GITHUB_OUTPUT = %q", out)
	}
	if sum, _ := os.ReadFile(ghSum); !strings.Contains(string(sum), "| hello | pass |") {
		t.Fatalf("GITHUB_STEP_SUMMARY = %q", sum)
	}
	if _, err := os.Stat(filepath.Join(dir, "reports", "hello.sarif")); err != nil {
		t.Fatalf("SARIF report: %v", err)
	}

	// Every tag PUT comes after the index manifest and the signatures.
	var indexPut, lastSig, firstTag = -1, -1, -1
	for _, q := range proxy.Requests() {
		if q.Method != http.MethodPut || !strings.Contains(q.Path, "/manifests/") {
			continue
		}
		ref := q.Path[strings.LastIndex(q.Path, "/")+1:]
		switch {
		case ref == res.Digest:
			indexPut = q.Seq
		case strings.HasSuffix(ref, ".sig") || strings.HasSuffix(ref, ".att") || strings.HasPrefix(ref, "sha256-"):
			lastSig = q.Seq // legacy tags, and the referrers tag of the bundles
		case strings.HasPrefix(ref, "sha256:"):
			lastSig = max(lastSig, q.Seq) // a bundle referrer manifest
		case !strings.HasPrefix(ref, "sha256:") && firstTag < 0:
			firstTag = q.Seq
		}
	}
	if indexPut < 0 || lastSig < 0 || firstTag < 0 || !(indexPut < lastSig && lastSig < firstTag) {
		t.Fatalf("order: index PUT #%d, last signature PUT #%d, first tag PUT #%d\n%s", indexPut, lastSig, firstTag, proxy)
	}

	// Rerun: same digest, nothing uploaded, no new signature layers.
	sigTag := strings.Replace(res.Digest, ":", "-", 1) + ".sig"
	sigRepo, _ := name.NewRepository(proxy.Host + "/team/hello")
	before := layerCount(t, sigRepo.Tag(sigTag))
	proxy.Reset()
	r = slipway(t, dir, env, "run", "--push", "--output-json", "results2.json")
	if r.code != 0 {
		t.Fatalf("rerun: %s", r)
	}
	reqs := proxy.Requests() // the rerun's, before this test's own reads
	res2 := readResults(t, filepath.Join(dir, "results2.json"))["hello"]
	if res2.Digest != res.Digest {
		t.Fatalf("rerun digest %s != %s", res2.Digest, res.Digest)
	}
	if n := proxy.BlobUploadBytes(); n != 0 {
		t.Fatalf("rerun uploaded %d blob bytes\n%s", n, proxy)
	}
	if after := layerCount(t, sigRepo.Tag(sigTag)); after != before {
		t.Fatalf("signature layers %d -> %d after rerun", before, after)
	}
	for _, q := range proxy.Requests() {
		if q.Method != http.MethodGet && q.Method != http.MethodHead && strings.Contains(q.Path, "/manifests/sha256") {
			t.Fatalf("rerun wrote a signature, bundle or referrers tag: %s %s\n%s", q.Method, q.Path, proxy)
		}
	}
	// Unchanged: confirmed with HEADs (issue #13: at most 16 requests),
	// one ping, no blob read back.
	pings := 0
	for _, q := range reqs {
		if q.Method == http.MethodGet && strings.Contains(q.Path, "/blobs/") {
			t.Errorf("rerun read a blob back: %s", q.Path)
		}
		if q.Path == "/v2/" {
			pings++
		}
	}
	if len(reqs) > 16 || pings > 1 {
		t.Errorf("rerun made %d requests (%d pings), want at most 16 (1)\n%v", len(reqs), pings, reqs)
	}
	t.Logf("rerun: %d requests, timings %v", len(reqs), res2.Timings)

	// GitOps: the pushed digest goes into Kubernetes YAML, comments kept.
	deploy := `# the hello service
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello # keep me
spec:
  template:
    spec:
      containers:
        - name: hello
          image: slipway://hello   # placeholder
        - name: sidecar
          image: "` + proxy.Host + `/team/hello:latest"
`
	writeFile(t, dir, "k8s/deploy.yaml", deploy)
	rv := slipway(t, dir, nil, "resolve", "-f", "k8s")
	if rv.code != 0 {
		t.Fatalf("resolve: %s", rv)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "k8s", "deploy.yaml"))
	want := strings.Replace(deploy, "slipway://hello", res.Ref, 1)
	want = strings.Replace(want, proxy.Host+"/team/hello:latest", res.Ref, 1)
	if string(got) != want {
		t.Fatalf("resolved YAML:\n%s\nwant:\n%s", got, want)
	}
}

func layerCount(t *testing.T, tag name.Tag) int {
	t.Helper()
	img, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

func TestDemoLayoutSignedAndPushable(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	key, pub := demoKey(t, dir, "pw")
	cfg := pipelineConfig("", db, key, pub, "", "abort")
	cfg = strings.Replace(cfg, "repository: \n", "", 1)
	cfg = helloOnly(cfg)
	writeFile(t, dir, "slipway.yaml", cfg)
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "run", "--oci-layout", "out")
	if r.code != 0 {
		t.Fatalf("run to layout: %s", r)
	}
	p := slipway(t, dir, nil, "push", "oci:out", "--repository", reg.Host+"/pub")
	if p.code != 0 {
		t.Fatalf("push layout: %s", p)
	}
	ref := pushedRef(t, p.stdout, "hello")
	v := slipway(t, dir, nil, "verify", reg.Host+"/pub/hello:latest", "--key", pub)
	if v.code != 0 || strings.TrimSpace(v.stdout) != ref.String() {
		t.Fatalf("verify of the pushed layout: %s", v)
	}
}

func nowish() time.Time { return time.Now().Add(-time.Minute) }
