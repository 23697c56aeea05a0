package e2e

// Registry faults (issue 6): slipway against docker-registry behind a
// fault-injecting proxy. Every case checks the outcome in the registry
// itself (read directly, not through the proxy): a successful push
// validates and carries the locally computed digest; a failed one leaves
// no tag and no signature.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/faultproxy"
)

// tally logs the faults p injected (endpoint class × kind), for the report.
func tally(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	var parts []string
	for c, kinds := range p.Faults() {
		for k, n := range kinds {
			parts = append(parts, fmt.Sprintf("%s×%s=%d", c, k, n))
		}
	}
	sort.Strings(parts)
	t.Logf("faults injected: %s", strings.Join(parts, " "))
}

// faultConfig is a one-target, one-platform config building app (a copy
// of testdata/apps/hello outside the git checkout, so that a commit landing
// mid-test cannot change the image) and pushing to repo.
func faultConfig(app, repo, base string) string {
	return fmt.Sprintf(`repository: %s
platforms: [linux/amd64]
base: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
    tags: [latest, v1]
`, repo, base, app)
}

// pushBase writes a small linux/amd64 base image (two random layers) to
// host/repo:1, directly (no proxy), and returns it.
func pushBase(t *testing.T, host, repo string, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/" + repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("pushing base %s: %v", ref, err)
	}
	return img
}

// localDigest builds cfg into an OCI layout (nothing pushed) and returns
// the index digest slipway computes locally for hello.
func localDigest(t *testing.T, cfg string, env []string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", cfg)
	r := slipway(t, dir, env, "build", "--oci-layout", "out", "--output-json", "local.json")
	if r.code != 0 {
		t.Fatalf("layout build: %s", r)
	}
	d := readResults(t, filepath.Join(dir, "local.json"))["hello"].Digest
	if !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("no local digest: %s", r)
	}
	return d
}

// pushRun is one `slipway build --push` of cfg in a fresh directory, with
// the results JSON read back (zero when absent) and the elapsed time.
type pushRun struct {
	result
	res     targetResult
	elapsed time.Duration
}

func pushWith(t *testing.T, cfg string, env []string, args ...string) pushRun {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", cfg)
	start := time.Now()
	r := slipway(t, dir, env, append([]string{"build", "--push", "--output-json", "res.json"}, args...)...)
	pr := pushRun{result: r, elapsed: time.Since(start)}
	if _, err := os.Stat(filepath.Join(dir, "res.json")); err == nil {
		pr.res = readResults(t, filepath.Join(dir, "res.json"))["hello"]
	}
	return pr
}

// checkPushed reads repo (host/repo, directly from the registry) and fails
// unless digest is there, validates (every blob present and matching its
// digest), and the tags latest and v1 point at it.
func checkPushed(t *testing.T, host, repo, digest string, opts ...remote.Option) {
	t.Helper()
	r, err := name.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r.Digest(digest), opts...)
	if err != nil {
		t.Fatalf("reading back %s@%s: %v", r, digest, err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index(%s@%s): %v", r, digest, err)
	}
	for _, tag := range []string{"latest", "v1"} {
		d, err := remote.Head(r.Tag(tag), opts...)
		if err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
		if d.Digest.String() != digest {
			t.Fatalf("tag %s -> %s, want %s", tag, d.Digest, digest)
		}
	}
}

// checkNothingTagged fails if repo (directly from the registry) has any
// tag, a cosign signature or attestation among them.
func checkNothingTagged(t *testing.T, host, repo string, opts ...remote.Option) {
	t.Helper()
	r, err := name.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r, opts...)
	if err != nil {
		// distribution answers NAME_UNKNOWN for a repository never written.
		if strings.Contains(err.Error(), "NAME_UNKNOWN") {
			return
		}
		t.Fatalf("listing %s: %v", r, err)
	}
	if len(tags) > 0 {
		t.Fatalf("%s has tags after a failed push: %v", r, tags)
	}
}

// blobFiles counts the blobs stored in reg (every repository).
func blobFiles(t *testing.T, reg *testutil.Registry) int {
	t.Helper()
	n := 0
	filepath.Walk(filepath.Join(reg.Root, "docker", "registry", "v2", "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Name() == "data" {
			n++
		}
		return nil
	})
	return n
}

// proxied starts a registry and a fault proxy in front of it.
func proxied(t *testing.T, opts ...testutil.RegistryOption) (*testutil.Registry, *faultproxy.Proxy) {
	t.Helper()
	reg := testutil.StartRegistry(t, opts...)
	return reg, faultproxy.Start(t, reg.URL())
}

// transientCodes are the statuses a registry or a proxy in front of it
// answers when it is briefly unable to serve.
var transientCodes = []int{408, 429, 500, 502, 503, 504}

// pushClasses are the endpoint classes a push on a registry base uses.
var pushClasses = []faultproxy.Class{
	faultproxy.BlobHead, faultproxy.BlobGet, faultproxy.UploadPost, faultproxy.UploadPatch,
	faultproxy.UploadPut, faultproxy.ManifestHead, faultproxy.ManifestGet, faultproxy.ManifestPut,
}

// TestTransientStatusRetried injects each transient status 1–2 times on
// every endpoint class of a push on a registry base (base manifest and
// config reads, blob checks, upload POST/PATCH/PUT, manifest HEAD/GET/PUT,
// tags). Every push must succeed with the locally computed digest, and
// the image must validate when read back from the registry.
func TestTransientStatusRetried(t *testing.T) {
	reg := testutil.StartRegistry(t)
	pushBase(t, reg.Host, "base/img")
	app := copyApp(t, "hello")
	for _, code := range transientCodes {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			p := faultproxy.Start(t, reg.URL())
			times := 1
			if code == 429 || code == 503 {
				times = 2
			}
			for _, c := range pushClasses {
				p.Add(&faultproxy.Rule{Class: c, Times: times, Action: faultproxy.Status(code, "")})
			}
			repo := fmt.Sprintf("team%d", code)
			cfg := faultConfig(app, p.Host+"/"+repo, p.Host+"/base/img:1")
			run := pushWith(t, cfg, nil)
			tally(t, p)
			if run.code != 0 {
				t.Fatalf("push with %d injected: %s\n%s", code, run, p)
			}
			for _, c := range pushClasses {
				if n := p.Faults()[c][fmt.Sprint(code)]; n != times {
					t.Errorf("%s: %d faults injected, want %d (the class was not exercised)", c, n, times)
				}
			}
			want := localDigest(t, faultConfig(app, p.Host+"/"+repo, p.Host+"/base/img:1"), nil)
			if run.res.Digest != want {
				t.Fatalf("pushed %s, locally computed %s", run.res.Digest, want)
			}
			checkPushed(t, reg.Host, repo+"/hello", want)
			t.Logf("%d: pushed in %s", code, run.elapsed.Round(time.Millisecond))
		})
	}
}

// TestRetryAfterHonoured: a 429 with Retry-After delays the next attempt
// by at least that long, and a huge Retry-After is capped (the push still
// completes in bounded time).
func TestRetryAfterHonoured(t *testing.T) {
	reg := testutil.StartRegistry(t)
	pushBase(t, reg.Host, "base/img")
	app := copyApp(t, "hello")
	cases := []struct {
		name, after string
		class       faultproxy.Class
		minGap      time.Duration
		maxTotal    time.Duration
	}{
		{"manifest PUT, 3s", "3", faultproxy.ManifestPut, 3 * time.Second, 60 * time.Second},
		{"base manifest GET, 3s", "3", faultproxy.ManifestGet, 3 * time.Second, 60 * time.Second},
		{"blob HEAD, one hour", "3600", faultproxy.BlobHead, time.Second, 60 * time.Second},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := faultproxy.Start(t, reg.URL())
			p.Add(&faultproxy.Rule{Class: c.class, Times: 1, Action: faultproxy.Status(429, c.after)})
			repo := fmt.Sprintf("ra%d", i)
			run := pushWith(t, faultConfig(app, p.Host+"/"+repo, p.Host+"/base/img:1"), nil)
			tally(t, p)
			if run.code != 0 {
				t.Fatalf("push: %s\n%s", run, p)
			}
			if run.elapsed > c.maxTotal {
				t.Fatalf("push took %s with Retry-After: %s (unbounded wait)", run.elapsed, c.after)
			}
			reqs := p.Requests()
			gap := time.Duration(-1)
			for j, q := range reqs {
				if q.Fault == "" {
					continue
				}
				for _, n := range reqs[j+1:] {
					if n.Class == q.Class && n.Path == q.Path {
						gap = n.Start.Sub(q.End)
						break
					}
				}
			}
			if gap < 0 {
				t.Fatalf("no retry after the 429\n%s", p)
			}
			if gap < c.minGap-100*time.Millisecond {
				t.Fatalf("retried %s after a 429 with Retry-After: %s (want ≥ %s)", gap.Round(time.Millisecond), c.after, c.minGap)
			}
			checkPushed(t, reg.Host, repo+"/hello", run.res.Digest)
			t.Logf("Retry-After %s on %s: retried after %s, push %s", c.after, c.class, gap.Round(time.Millisecond), run.elapsed.Round(time.Millisecond))
		})
	}
}

// TestPersistentManifestPut503: a registry that never accepts a manifest
// makes the push fail within a bounded time, naming the endpoint and the
// status, with no tag and no signature written.
func TestPersistentManifestPut503(t *testing.T) {
	reg, p := proxied(t)
	app := copyApp(t, "hello")
	dir := t.TempDir()
	key, pub := demoKey(t, dir, "pw")
	p.Add(&faultproxy.Rule{Class: faultproxy.ManifestPut, Action: faultproxy.Status(503, "")})
	cfg := faultConfig(app, p.Host+"/team", "scratch") + fmt.Sprintf("sign:\n  key: %s\npolicy:\n  keys: [%s]\n", key, pub)
	run := pushWith(t, cfg, []string{"COSIGN_PASSWORD=pw"}, "--sign")
	tally(t, p)
	if run.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", run.code, run)
	}
	if run.elapsed > 60*time.Second {
		t.Fatalf("gave up after %s, want < 60s", run.elapsed)
	}
	last := lastLine(run.stderr)
	for _, want := range []string{"manifests/", "503"} {
		if !strings.Contains(last, want) {
			t.Errorf("error %q does not name %q", last, want)
		}
	}
	if run.stdout != "" {
		t.Errorf("stdout: %q", run.stdout)
	}
	checkNothingTagged(t, reg.Host, "team/hello")
	for _, q := range p.Requests() {
		if q.Class == faultproxy.ManifestPut && !strings.Contains(q.Path, "/manifests/sha256:") {
			t.Fatalf("tag or signature PUT after the image failed: %s %s", q.Method, q.Path)
		}
	}
	t.Logf("failed after %s with %d manifest PUTs: %s", run.elapsed.Round(time.Millisecond), p.Count(faultproxy.ManifestPut), last)
}
