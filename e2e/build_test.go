package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/slipway-build/slipway/internal/testutil"
)

const helloConfig = `repository: %s/team
platforms: [linux/amd64, linux/arm64]
base: scratch
targets:
  - name: hello
    main: ./cmd/hello
    ldflags: ["-X main.version={{.Env.APP_VERSION}}"]
    tags: [latest, v1]
    image:
      env: {LOG_FORMAT: json}
      ports: [8080]
      labels: {team: payments}
      annotations: {org.opencontainers.image.description: "hello service"}
  - name: worker
    main: ./cmd/worker
`

// pushedRef parses the line slipway printed for target.
func pushedRef(t *testing.T, stdout, target string) name.Digest {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if strings.Contains(l, "/"+target+"@sha256:") {
			d, err := name.NewDigest(l)
			if err != nil {
				t.Fatalf("stdout line %q: %v", l, err)
			}
			return d
		}
	}
	t.Fatalf("no reference for %s in stdout:\n%s", target, stdout)
	return name.Digest{}
}

func TestBuildPushAndRun(t *testing.T) {
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	writeFile(t, app, "slipway.yaml", fmt.Sprintf(helloConfig, reg.Host))

	r := slipway(t, app, []string{"APP_VERSION=1.2.3"}, "build", "--push")
	if r.code != 0 {
		t.Fatalf("build --push: %s", r)
	}
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 2 {
		t.Fatalf("want one stdout line per target, got %d:\n%s", n, r.stdout)
	}
	ref := pushedRef(t, r.stdout, "hello")
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("platforms = %v", plats)
	}
	for _, tag := range []string{"latest", "v1"} {
		desc, err := remote.Head(ref.Context().Tag(tag))
		if err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
		if desc.Digest.String() != ref.DigestStr() {
			t.Fatalf("tag %s -> %s, want %s", tag, desc.Digest, ref.DigestStr())
		}
	}

	// The amd64 image runs: unpacked with umoci, run with runc.
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/app/hello" {
		t.Fatalf("config user=%q entrypoint=%v", cf.Config.User, cf.Config.Entrypoint)
	}
	runImage(t, img)
}

// runcBundle unpacks img with umoci into a runc bundle (skipping when
// umoci or runc is missing, unless SLIPWAY_REQUIRE_TOOLS) and lets edit
// change its process and linux sections (terminal is already off).
func runcBundle(t *testing.T, img v1.Image, edit func(proc, linux map[string]any)) string {
	t.Helper()
	for _, tool := range []string{"umoci", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s not installed (run make deps)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "run"})); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", filepath.Join(dir, "oci")+":run", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	var spec map[string]any
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	edit(proc, spec["linux"].(map[string]any))
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// runImage unpacks img with umoci, runs it with runc in the host network
// namespace, checks /health/live and the uid, then stops it with SIGTERM
// and expects exit status 0 within the grace period.
func runImage(t *testing.T, img v1.Image) {
	t.Helper()
	port := testutil.FreePort(t)
	bundle := runcBundle(t, img, func(proc, linux map[string]any) {
		proc["env"] = append(proc["env"].([]any), fmt.Sprintf("HELLO_ADDR=127.0.0.1:%d", port), "HELLO_GRACE=5s")
		var ns []any
		for _, n := range linux["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "network" {
				ns = append(ns, n)
			}
		}
		linux["namespaces"] = ns
	})

	id := fmt.Sprintf("slipway-e2e-%d", port)
	var logs strings.Builder
	cmd := exec.Command("runc", "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		exec.Command("runc", "kill", id, "KILL").Run()
		exec.Command("runc", "delete", "--force", id).Run()
	})

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: time.Second}
	var live *http.Response
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		live, err = client.Get(base + "/health/live")
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("container exited early: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("GET /health/live: %v\n%s", err, logs.String())
	}
	live.Body.Close()
	if live.StatusCode != http.StatusOK {
		t.Fatalf("GET /health/live = %d", live.StatusCode)
	}
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "(uid 65532)") {
		t.Fatalf("GET / = %q, want uid 65532", body)
	}
	if out, err := exec.Command("runc", "kill", id, "TERM").CombinedOutput(); err != nil {
		t.Fatalf("runc kill TERM: %v %s", err, out)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("container exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("container still running 5s after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no graceful shutdown log:\n%s", logs.String())
	}
}

// digests builds the app at dir into a layout with the given extra env and
// returns target → index digest.
func layoutDigests(t *testing.T, dir string, env []string, shell string) map[string]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oci")
	cmd := exec.Command("sh", "-c", shell+` exec "$0" build --oci-layout "$1"`, slipwayBin, out)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(t), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range im.Manifests {
		got[d.Annotations["dev.slipway.target"]] = d.Digest.String()
	}
	return got
}

func TestReproducible(t *testing.T) {
	cfg := strings.Replace(helloConfig, "repository: %s/team\n", "", 1)
	a, b := copyApp(t, "hello"), copyApp(t, "hello")
	writeFile(t, a, "slipway.yaml", cfg)
	writeFile(t, b, "slipway.yaml", cfg)
	env := []string{"APP_VERSION=1"}
	da := layoutDigests(t, a, append(env, "TZ=UTC"), "umask 022;")
	db := layoutDigests(t, b, append(env, "TZ=Asia/Kolkata"), "umask 077;")
	if da["hello"] == "" || da["worker"] == "" {
		t.Fatalf("missing targets: %v", da)
	}
	if da["hello"] != db["hello"] || da["worker"] != db["worker"] {
		t.Fatalf("two copies, different TZ and umask, different digests:\n%v\n%v", da, db)
	}
	// One source line changed in hello: only hello's digest changes.
	main := filepath.Join(b, "cmd", "hello", "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(main, []byte(strings.Replace(string(src), `fmt.Fprintln(w, "ok")`, `fmt.Fprintln(w, "OK")`, 1)), 0o644)
	dc := layoutDigests(t, b, env, "")
	if dc["hello"] == da["hello"] {
		t.Fatalf("hello digest unchanged after a source change")
	}
	if dc["worker"] != da["worker"] {
		t.Fatalf("worker digest changed although its source did not: %s -> %s", da["worker"], dc["worker"])
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	cfg := strings.Replace(helloConfig, "repository: %s/team\n", "", 1)
	writeFile(t, app, "slipway.yaml", cfg)
	r := slipway(t, app, []string{"APP_VERSION=2"}, "build", "--oci-layout", "out")
	if r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	local := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		_, dig, _ := strings.Cut(l, "@")
		local[dig] = l
	}
	p := slipway(t, app, nil, "push", "oci:out", "--repository", reg.Host+"/mirror")
	if p.code != 0 {
		t.Fatalf("push: %s", p)
	}
	for _, target := range []string{"hello", "worker"} {
		ref := pushedRef(t, p.stdout, target)
		if _, ok := local[ref.DigestStr()]; !ok {
			t.Fatalf("pushed %s, not a digest from the layout %v", ref, local)
		}
		desc, err := remote.Head(ref.Context().Tag("latest"))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != ref.DigestStr() {
			t.Fatalf("registry tag latest = %s, layout digest %s", desc.Digest, ref.DigestStr())
		}
	}
}

func TestPushTwiceUploadsNothing(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	app := copyApp(t, "hello")
	writeFile(t, app, "slipway.yaml", fmt.Sprintf(helloConfig, proxy.Host))
	env := []string{"APP_VERSION=3"}
	if r := slipway(t, app, env, "build", "--push"); r.code != 0 {
		t.Fatalf("first push: %s", r)
	}
	first := proxy.BlobUploadBytes()
	if first < 1<<20 {
		t.Fatalf("first push uploaded only %d bytes", first)
	}
	proxy.Reset()
	r := slipway(t, app, env, "build", "--push")
	if r.code != 0 {
		t.Fatalf("second push: %s", r)
	}
	if n := proxy.BlobUploadBytes(); n != 0 {
		t.Fatalf("second push uploaded %d blob bytes, want 0\n%s", n, proxy)
	}
	t.Logf("first push: %d blob bytes; second: 0", first)
}

// assertNoTags fails if any repository in reg has a tag.
func assertNoTags(t *testing.T, reg *testutil.Registry) {
	t.Helper()
	r, err := name.NewRegistry(reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range repos {
		tags, err := remote.List(r.Repo(repo))
		if err == nil && len(tags) > 0 {
			t.Fatalf("registry has tags in %s: %v", repo, tags)
		}
	}
}
