package e2e

// Registry faults (issue 6): slipway against docker-registry behind a
// fault-injecting proxy. Every case checks the outcome in the registry
// itself (read directly, not through the proxy): a successful push
// validates and carries the locally computed digest; a failed one leaves
// no tag and no signature.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// layerDigests are the digests of img's layers, in order.
func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// checkBlobStore fails unless every blob file in reg's storage holds bytes
// matching its digest, and the store holds exactly the blobs of the index
// host/repo@digest (its manifests, configs and layers): no partial or
// stray blob was committed.
func checkBlobStore(t *testing.T, reg *testutil.Registry, repo, digest string) {
	t.Helper()
	r, _ := name.NewRepository(reg.Host + "/" + repo)
	want := map[string]bool{digest: true}
	idx, err := remote.Index(r.Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		want[d.Digest.String()] = true
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		want[m.Config.Digest.String()] = true
		for _, l := range m.Layers {
			want[l.Digest.String()] = true
		}
	}
	got := storedBlobs(t, reg)
	for d := range want {
		if !got[d] {
			t.Errorf("blob %s of the image missing from the store", d)
		}
	}
	for d := range got {
		if !want[d] {
			t.Errorf("stray blob %s in the store", d)
		}
	}
}

// storedBlobs reads every blob in reg's storage, failing on one whose
// bytes do not match its digest, and returns the digests.
func storedBlobs(t *testing.T, reg *testutil.Registry) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	root := filepath.Join(reg.Root, "docker", "registry", "v2", "blobs", "sha256")
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || fi.Name() != "data" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		d := "sha256:" + filepath.Base(filepath.Dir(p))
		if sum := "sha256:" + hex.EncodeToString(h.Sum(nil)); sum != d {
			t.Errorf("CORRUPT blob in the store: %s holds %s", d, sum)
		}
		got[d] = true
		return nil
	})
	return got
}

// twoRegistries is a base registry and a destination registry, each behind
// its own fault proxy, with a base image in the first: pushing streams the
// base layers from one to the other (no cross-registry mount).
type twoRegistries struct {
	src, dst   *testutil.Registry
	psrc, pdst *faultproxy.Proxy
	base       v1.Image
	baseRef    string
}

func startTwoRegistries(t *testing.T) *twoRegistries {
	t.Helper()
	tr := &twoRegistries{}
	tr.src, tr.psrc = proxied(t)
	tr.dst, tr.pdst = proxied(t)
	tr.base = pushBase(t, tr.src.Host, "base/img")
	tr.baseRef = tr.psrc.Host + "/base/img:1"
	return tr
}

// TestConnectionResets: the connection drops mid-PATCH of the app layer
// and mid-GET of a base layer streamed from another registry. Both are
// retried; the destination holds exactly the image's blobs, each intact.
func TestConnectionResets(t *testing.T) {
	tr := startTwoRegistries(t)
	app := copyApp(t, "hello")
	layers := layerDigests(t, tr.base)
	tr.pdst.Add(&faultproxy.Rule{Class: faultproxy.UploadPatch, Times: 1,
		Match:  func(r *http.Request) bool { return r.ContentLength > 1<<20 },
		Action: faultproxy.ResetRequestAfter(256 << 10)})
	tr.psrc.Add(&faultproxy.Rule{Class: faultproxy.BlobGet, Times: 1,
		Match:  func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, layers[1]) },
		Action: faultproxy.ResetResponseAfter(16 << 10)})
	run := pushWith(t, faultConfig(app, tr.pdst.Host+"/team", tr.baseRef), nil)
	tally(t, tr.psrc)
	tally(t, tr.pdst)
	if run.code != 0 {
		t.Fatalf("push: %s\nsource:\n%s\ndestination:\n%s", run, tr.psrc, tr.pdst)
	}
	for _, p := range []*faultproxy.Proxy{tr.psrc, tr.pdst} {
		if n := len(p.Faults()); n != 1 {
			t.Fatalf("fault not injected (%d classes):\n%s", n, p)
		}
	}
	checkPushed(t, tr.dst.Host, "team/hello", run.res.Digest)
	checkBlobStore(t, tr.dst, "team/hello", run.res.Digest)
	if got := tr.psrc.Count(faultproxy.BlobGet); got < 2 {
		t.Fatalf("base layer GET not retried:\n%s", tr.psrc)
	}
}

// TestLyingBlobHead: the registry claims (HEAD 200) to have every blob it
// was never sent. slipway must not exit 0 with an image whose blobs are
// missing: distribution refuses the manifest, and nothing is tagged.
func TestLyingBlobHead(t *testing.T) {
	reg, p := proxied(t)
	app := copyApp(t, "hello")
	p.Add(&faultproxy.Rule{Class: faultproxy.BlobHead, Action: faultproxy.Serve("lying-head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Content-Digest", r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
		w.Header().Set("Content-Length", "1024")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
	})})
	run := pushWith(t, faultConfig(app, p.Host+"/team", "scratch"), nil)
	tally(t, p)
	if run.code == 0 {
		// Exit 0 is only acceptable if the image really is complete.
		checkPushed(t, reg.Host, "team/hello", run.res.Digest)
		t.Fatalf("exit 0 although no blob was uploaded:\n%s", p)
	}
	if run.code != 1 || !strings.Contains(run.stderr, "MANIFEST_BLOB_UNKNOWN") && !strings.Contains(run.stderr, "BLOB_UNKNOWN") {
		t.Fatalf("want exit 1 naming the unknown blob:\n%s", run)
	}
	if p.Count(faultproxy.UploadPatch) != 0 {
		t.Fatalf("blobs were uploaded despite HEAD 200:\n%s", p)
	}
	checkNothingTagged(t, reg.Host, "team/hello")
	storedBlobs(t, reg)
	t.Logf("lying HEAD: %s", lastLine(run.stderr))
}

// TestCorruptBase: a base layer served with other bytes (a valid layer of
// the same size), truncated (a clean, short response), or the base tag
// served with a forged Docker-Content-Digest. The run fails naming the
// mismatch; the destination holds no tag and no corrupt or forged blob,
// and nothing at all when the mismatch shows before the push.
func TestCorruptBase(t *testing.T) {
	db := fixtureDB(t)
	app := copyApp(t, "hello")
	cases := []struct {
		name       string
		rule       func(base v1.Image) *faultproxy.Rule
		readOnPush bool
	}{
		{"other bytes, same size", func(base v1.Image) *faultproxy.Rule {
			ls, _ := base.Layers()
			d, _ := ls[0].Digest()
			size, _ := ls[0].Size()
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(d.String()),
				Action: faultproxy.Body("wrong-bytes", forgedLayer(t, int(size)), nil)}
		}, false},
		// Forged bytes on the first read only: the scan reads them and the
		// push would copy the real ones. The scanner checks each layer's
		// digest before analysing it, so the gate never judges bytes that
		// are not the image's.
		{"other bytes on the first read only", func(base v1.Image) *faultproxy.Rule {
			ls, _ := base.Layers()
			d, _ := ls[0].Digest()
			size, _ := ls[0].Size()
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(d.String()), Times: 1,
				Action: faultproxy.Body("wrong-bytes-once", forgedLayer(t, int(size)), nil)}
		}, false},
		{"truncated", func(base v1.Image) *faultproxy.Rule {
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(layerDigests(t, base)[1]), Action: faultproxy.Truncate(1000)}
		}, false},
		{"forged tag digest", func(v1.Image) *faultproxy.Rule {
			return &faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.RewriteHeader("Docker-Content-Digest", func(string) string {
				return "sha256:" + strings.Repeat("ab", 32)
			})}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tr := startTwoRegistries(t)
			tr.psrc.Add(c.rule(tr.base))
			cfg := faultConfig(app, tr.pdst.Host+"/team", tr.baseRef) +
				fmt.Sprintf("scan:\n  db: {dir: %s}\n  cache_dir: %s\n", db, t.TempDir())
			run := pushWith(t, cfg, nil, "--scan")
			tally(t, tr.psrc)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1:\n%s\n%s", run.code, run, tr.psrc)
			}
			if len(tr.psrc.Faults()) == 0 {
				t.Fatalf("fault not injected:\n%s", tr.psrc)
			}
			last := lastLine(run.stderr)
			if !mentionsDigestMismatch(last) {
				t.Fatalf("error does not say the digest did not match: %q", last)
			}
			stored := storedBlobs(t, tr.dst) // fails on any corrupt blob
			if c.readOnPush {
				// Trivy stops reading a layer at the tar end marker, before
				// go-containerregistry's digest check at EOF: the mismatch
				// surfaces when the push streams the layer. Blobs pushed
				// before it are intact; nothing is tagged, the forged
				// layer is not stored.
				checkNothingTagged(t, tr.dst.Host, "team/hello")
				for _, d := range layerDigests(t, tr.base) {
					if stored[d] {
						t.Fatalf("forged layer %s stored", d)
					}
				}
			} else {
				registryHasNothing(t, tr.dst)
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
}

// forgedLayer is a valid gzipped tar layer (one file of random bytes) of
// exactly size bytes, padded with a gzip header extra field: a substitute
// for a real layer that passes every check but the digest.
func forgedLayer(t *testing.T, size int) []byte {
	t.Helper()
	gz := func(n int, extra []byte) []byte {
		content := make([]byte, n)
		for i := range content {
			content[i] = byte(i*7919 + i/251) // incompressible enough, deterministic
		}
		var tarBuf bytes.Buffer
		tw := tar.NewWriter(&tarBuf)
		tw.WriteHeader(&tar.Header{Name: "etc/forged", Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
		tw.Write(content)
		tw.Close()
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.NoCompression)
		zw.Extra = extra
		zw.Write(tarBuf.Bytes())
		zw.Close()
		return b.Bytes()
	}
	for n := size - 8192; n > 0; n -= 1024 {
		bare := len(gz(n, nil))
		if pad := size - bare - 2; pad >= 1 && pad < 60000 {
			out := gz(n, bytes.Repeat([]byte{'x'}, pad))
			if len(out) != size {
				t.Fatalf("forged layer is %d bytes, want %d", len(out), size)
			}
			return out
		}
	}
	t.Fatalf("cannot forge a layer of %d bytes", size)
	return nil
}

func mentionsDigestMismatch(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"digest mismatch", "does not match", "unexpected digest", "size mismatch", "error verifying"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func suffix(d string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, d) }
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// rssLimit is the most memory slipway may use on hostile registry input.
const rssLimit = 256 << 20

// TestBaseMediaTypes: a base whose manifest has the wrong media type
// (text/plain, Docker schema 1), an image with a layer type no runtime
// knows, or an index served where the index said an image is. Each fails
// with an error naming the type, and nothing is pushed.
func TestBaseMediaTypes(t *testing.T) {
	app := copyApp(t, "hello")
	schema1 := []byte(`{"schemaVersion":1,"name":"base/img","tag":"1","architecture":"amd64","fsLayers":[{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],"history":[{"v1Compatibility":"{\"id\":\"x\"}"}],"signatures":[]}`)
	cases := []struct {
		name  string
		setup func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string // returns the base ref
		want  string
	}{
		{"text/plain manifest", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			pushBase(t, reg.Host, "base/img")
			p.Add(&faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.RewriteHeader("Content-Type", func(string) string { return "text/plain" })})
			return p.Host + "/base/img:1"
		}, `"text/plain"`},
		{"schema1", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			pushBase(t, reg.Host, "base/img")
			p.Add(&faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.Body("schema1", schema1,
				map[string]string{"Content-Type": string(types.DockerManifestSchema1Signed)})})
			return p.Host + "/base/img:1"
		}, string(types.DockerManifestSchema1Signed)},
		{"unknown layer type", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			img := pushBase(t, reg.Host, "base/plain")
			l, err := random.Layer(1024, "application/vnd.example.unknown.layer.v1")
			if err != nil {
				t.Fatal(err)
			}
			img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: "application/vnd.example.unknown.layer.v1"})
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(reg.Host + "/base/img:1")
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			return p.Host + "/base/img:1"
		}, "application/vnd.example.unknown.layer.v1"},
		{"index where an image is expected", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			// The base index says its linux/amd64 entry is an image
			// manifest; the bytes behind that digest are an index.
			img := pushBase(t, reg.Host, "base/img")
			inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
			innerRef, _ := name.ParseReference(reg.Host + "/base/img:inner")
			if err := remote.WriteIndex(innerRef, inner); err != nil {
				t.Fatal(err)
			}
			raw, _ := inner.RawManifest()
			d, _ := inner.Digest()
			outer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}}]}`,
				types.OCIImageIndex, types.OCIManifestSchema1, d, len(raw))
			ref, _ := name.ParseReference(reg.Host + "/base/img:1")
			if err := remote.Put(ref, rawManifest{[]byte(outer), types.OCIImageIndex}); err != nil {
				t.Fatal(err)
			}
			return p.Host + "/base/img:1"
		}, "OCI index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg, p := proxied(t)
			base := c.setup(t, reg, p)
			run := pushWith(t, faultConfig(app, p.Host+"/team", base), nil)
			tally(t, p)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", run.code, run, p)
			}
			last := lastLine(run.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not name %s: %q", c.want, last)
			}
			checkNothingTagged(t, reg.Host, "team/hello")
			r, _ := name.NewRepository(reg.Host + "/team/hello")
			if tags, err := remote.List(r); err == nil && len(tags) > 0 {
				t.Fatalf("tags: %v", tags)
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
}

// TestOversizedResponses: a 50 MiB manifest for the base, an endless error
// body, an endless manifest and an endless token body. Each fails in
// bounded time with slipway's peak RSS under 256 MiB.
func TestOversizedResponses(t *testing.T) {
	app := copyApp(t, "hello")
	huge := bytes.Repeat([]byte(" "), 50<<20)
	cases := []struct {
		name  string
		token bool
		rule  *faultproxy.Rule
		want  string
	}{
		{"50 MiB base manifest", false, &faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.Body("huge-manifest", huge, nil)}, "limit"},
		{"endless base manifest", false, &faultproxy.Rule{Class: faultproxy.ManifestGet,
			Action: faultproxy.Endless(200, string(types.OCIManifestSchema1), 1<<30, 50*time.Second)}, "limit"},
		{"endless error body", false, &faultproxy.Rule{Class: faultproxy.ManifestGet,
			Action: faultproxy.Endless(500, "application/json", 1<<30, 50*time.Second)}, "exceeds"},
		{"endless token body", true, &faultproxy.Rule{Class: faultproxy.Token,
			Action: faultproxy.Endless(200, "application/json", 1<<30, 50*time.Second)}, "exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var reg *testutil.Registry
			var p *faultproxy.Proxy
			env := []string{}
			if c.token {
				ts := testutil.NewTokenServer(t, "robot", "pw", time.Minute)
				p = faultproxy.Start(t, "", faultproxy.WithToken(ts))
				reg = testutil.StartRegistry(t, testutil.WithTokenAuth(ts, p.URL+faultproxy.TokenPath))
				if err := p.SetTarget(reg.URL()); err != nil {
					t.Fatal(err)
				}
				env = append(env, "DOCKER_CONFIG="+dockerConfig(t, map[string]string{p.Host: "robot:pw"}, nil))
				pushBase(t, p.Host, "base/img", remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"}))
			} else {
				reg, p = proxied(t)
				pushBase(t, reg.Host, "base/img")
			}
			p.Add(c.rule)
			dir := t.TempDir()
			writeFile(t, dir, "slipway.yaml", faultConfig(app, p.Host+"/team", p.Host+"/base/img:1"))
			start := time.Now()
			r, rss := slipwayRSS(t, dir, env, "build", "--push")
			elapsed := time.Since(start)
			tally(t, p)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", r.code, r)
			}
			if len(p.Faults()) == 0 {
				t.Fatalf("fault not injected:\n%s", p)
			}
			if elapsed > 60*time.Second {
				t.Fatalf("took %s", elapsed)
			}
			if rss == 0 || rss > rssLimit {
				t.Fatalf("peak RSS %d MiB, limit %d MiB", rss>>20, rssLimit>>20)
			}
			last := lastLine(r.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not mention %q: %q", c.want, last)
			}
			var out int64
			for _, q := range p.Requests() {
				out += q.Out
			}
			if c.token {
				// Token realms must be on the host clients use: read
				// through the proxy, without the fault.
				p.Clear()
				checkNothingTagged(t, p.Host, "team/hello", authFor(c.token)...)
			} else {
				checkNothingTagged(t, reg.Host, "team/hello")
			}
			t.Logf("%s: exit %d in %s, peak RSS %d MiB, %d MiB served: %s", c.name, r.code, elapsed.Round(time.Millisecond), rss>>20, out>>20, last)
		})
	}
}

func authFor(token bool) []remote.Option {
	if !token {
		return nil
	}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"})}
}

// dockerConfig writes a Docker config.json with auths (host → "user:pw")
// and credHelpers (host → helper suffix) and returns its directory.
func dockerConfig(t *testing.T, auths, helpers map[string]string) string {
	t.Helper()
	cfg := map[string]any{}
	a := map[string]any{}
	for h, up := range auths {
		a[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(up))}
	}
	cfg["auths"] = a
	if helpers != nil {
		cfg["credHelpers"] = helpers
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "config.json", string(b))
	return dir
}

// credentialed counts the requests in p's log that carried an
// Authorization header.
func credentialed(p *faultproxy.Proxy) int {
	n := 0
	for _, q := range p.Requests() {
		if q.Auth != "" {
			n++
		}
	}
	return n
}

// TestDecoyGetsNoCredentials: a blob GET redirected to, an upload Location
// pointing at, or a token realm on another loopback address (a decoy on
// 127.0.0.2). The decoy must never receive a request carrying credentials;
// a push that cannot complete fails, never exits 0 with a broken image.
func TestDecoyGetsNoCredentials(t *testing.T) {
	app := copyApp(t, "hello")
	t.Run("redirects", func(t *testing.T) {
		for _, c := range []string{"blob GET", "upload Location"} {
			t.Run(c, func(t *testing.T) {
				t.Parallel()
				reg, p := proxied(t, testutil.WithBasicAuth("robot", "s3cret"))
				decoy := faultproxy.Start(t, reg.URL(), faultproxy.WithAddr("127.0.0.2:0"))
				auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
				pushBase(t, reg.Host, "base/img", auth)
				if c == "blob GET" {
					p.Add(&faultproxy.Rule{Class: faultproxy.BlobGet, Action: faultproxy.Serve("redirect-to-decoy", func(w http.ResponseWriter, r *http.Request) {
						http.Redirect(w, r, decoy.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
					})})
				} else {
					p.Add(&faultproxy.Rule{Class: faultproxy.UploadPost, Action: faultproxy.RewriteHeader("Location", func(old string) string {
						if strings.HasPrefix(old, "/") {
							return decoy.URL + old
						}
						return old
					})})
				}
				env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
				run := pushWith(t, faultConfig(app, p.Host+"/team", p.Host+"/base/img:1"), env)
				tally(t, p)
				if len(p.Faults()) == 0 {
					t.Fatalf("no redirect injected (the case tests nothing):\n%s", p)
				}
				if n := credentialed(decoy); n != 0 {
					t.Fatalf("decoy received %d requests with credentials:\n%s", n, decoy)
				}
				if run.code == 0 {
					checkPushed(t, reg.Host, "team/hello", run.res.Digest, auth)
				} else {
					checkNothingTagged(t, reg.Host, "team/hello", auth)
				}
				t.Logf("%s: exit %d, decoy saw %d requests, 0 with credentials: %s", c, run.code, len(decoy.Requests()), lastLine(run.stderr))
			})
		}
	})
	t.Run("token realm", func(t *testing.T) {
		ts := testutil.NewTokenServer(t, "robot", "s3cret", time.Minute)
		decoy := faultproxy.Start(t, "", faultproxy.WithAddr("127.0.0.2:0"), faultproxy.WithToken(ts))
		_, p := proxied(t, testutil.WithTokenAuth(ts, decoy.URL+faultproxy.TokenPath))
		env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
		run := pushWith(t, faultConfig(app, p.Host+"/team", "scratch"), env)
		if run.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", run.code, run)
		}
		if n := credentialed(decoy); n != 0 {
			t.Fatalf("decoy token realm received %d requests with credentials:\n%s", n, decoy)
		}
		if issued, _ := ts.Issued(); issued != 0 {
			t.Fatalf("decoy issued %d tokens", issued)
		}
		if !strings.Contains(lastLine(run.stderr), "realm") {
			t.Fatalf("error does not name the realm: %q", lastLine(run.stderr))
		}
		t.Logf("token realm on 127.0.0.2: decoy saw %d requests: %s", len(decoy.Requests()), lastLine(run.stderr))
	})
}

// TestTokenExpiryMidUpload: tokens live 2 s and the app layer's upload is
// held for 3 s, so the token expires mid-upload. The push completes after
// re-authenticating, or fails cleanly (nothing tagged) and a re-run with a
// sane token lifetime completes.
func TestTokenExpiryMidUpload(t *testing.T) {
	app := copyApp(t, "hello")
	ts := testutil.NewTokenServer(t, "robot", "s3cret", 2*time.Second)
	p := faultproxy.Start(t, "", faultproxy.WithToken(ts))
	reg := testutil.StartRegistry(t, testutil.WithTokenAuth(ts, p.URL+faultproxy.TokenPath))
	if err := p.SetTarget(reg.URL()); err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
	p.Add(&faultproxy.Rule{Class: faultproxy.UploadPatch, Times: 1,
		Match: func(r *http.Request) bool { return r.ContentLength > 1<<20 }, Action: faultproxy.Delay(3 * time.Second)})
	env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
	cfg := faultConfig(app, p.Host+"/team", "scratch")
	run := pushWith(t, cfg, env)
	tally(t, p)
	var expired int
	for _, q := range p.Requests() {
		if q.Status == http.StatusUnauthorized && q.Auth != "" {
			expired++
		}
	}
	if expired == 0 {
		t.Fatalf("no request was refused with an expired token (the case tests nothing):\n%s", p)
	}
	issued, _ := ts.Issued()
	p.Clear()
	if run.code != 0 {
		checkNothingTagged(t, p.Host, "team/hello", auth)
		ts.SetLifetime(time.Minute)
		rerun := pushWith(t, cfg, env)
		if rerun.code != 0 {
			t.Fatalf("re-run after a clean failure: %s", rerun)
		}
		run = rerun
		t.Logf("expired mid-upload: failed cleanly (%s); re-run completed", lastLine(run.stderr))
	} else {
		t.Logf("expired mid-upload: %d requests refused, %d tokens issued, push completed after re-auth", expired, issued)
	}
	checkPushed(t, p.Host, "team/hello", run.res.Digest, auth)
}

// TestParallelPushesBounded: ten `slipway build --push --jobs 2` processes
// push the same image at once, each through its own proxy, sharing one
// user cache directory. Each keeps at most 2 requests in flight; all exit
// 0 with the same digest; a final run on the shared cache still succeeds.
func TestParallelPushesBounded(t *testing.T) {
	const procs, jobs = 10, 2
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	cache := t.TempDir()
	env := []string{"XDG_CACHE_HOME=" + cache}
	proxies := make([]*faultproxy.Proxy, procs)
	runs := make([]pushRun, procs)
	var wg sync.WaitGroup
	for i := range procs {
		proxies[i] = faultproxy.Start(t, reg.URL())
		cfg := faultConfig(app, proxies[i].Host+"/team", "scratch")
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = pushWith(t, cfg, env, "--jobs", fmt.Sprint(jobs))
		}()
	}
	wg.Wait()
	digests := map[string]int{}
	maxIn := 0
	for i, r := range runs {
		if r.code != 0 {
			t.Fatalf("process %d: %s", i, r)
		}
		digests[r.res.Digest]++
		m := proxies[i].MaxInFlight()
		maxIn = max(maxIn, m)
		if m > jobs {
			t.Errorf("process %d had %d requests in flight, --jobs %d", i, m, jobs)
		}
	}
	if len(digests) != 1 {
		t.Fatalf("digests differ: %v", digests)
	}
	var digest string
	for d := range digests {
		digest = d
	}
	checkPushed(t, reg.Host, "team/hello", digest)
	final := pushWith(t, faultConfig(app, reg.Host+"/team", "scratch"), env)
	if final.code != 0 || final.res.Digest != digest {
		t.Fatalf("final run on the shared cache: %s", final)
	}
	checkPushed(t, reg.Host, "team/hello", digest)
	storedBlobs(t, reg)
	t.Logf("%d processes, --jobs %d: max in flight per process %d, one digest %s", procs, jobs, maxIn, digest)
}

// TestCredentialHelpers: a credential helper that is missing, fails, or
// prints garbage; credentials for host A while pushing to host B. Each is
// a clear error, and B never receives A's credentials.
func TestCredentialHelpers(t *testing.T) {
	app := copyApp(t, "hello")
	reg, p := proxied(t, testutil.WithBasicAuth("robot", "s3cret"))
	bin := t.TempDir()
	writeFile(t, bin, "docker-credential-broken", "#!/bin/sh\necho 'helper exploded' >&2\nexit 1\n")
	writeFile(t, bin, "docker-credential-garbage", "#!/bin/sh\necho 'this is not json {'\n")
	for _, f := range []string{"docker-credential-broken", "docker-credential-garbage"} {
		os.Chmod(filepath.Join(bin, f), 0o755)
	}
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	aSecret := base64.StdEncoding.EncodeToString([]byte("alice:host-a-secret"))
	cases := []struct {
		name         string
		auths, helps map[string]string
		want         string
	}{
		{"missing helper", nil, map[string]string{p.Host: "nosuch"}, "docker-credential-nosuch"},
		{"failing helper", nil, map[string]string{p.Host: "broken"}, "error getting credentials"},
		{"garbage helper", nil, map[string]string{p.Host: "garbage"}, "invalid"},
		{"credentials for another host", map[string]string{"127.0.0.2:5000": "alice:host-a-secret"}, nil, "UNAUTHORIZED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.Reset()
			env := []string{path, "DOCKER_CONFIG=" + dockerConfig(t, c.auths, c.helps)}
			run := pushWith(t, faultConfig(app, p.Host+"/team", "scratch"), env)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", run.code, run)
			}
			last := lastLine(run.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not mention %q: %q", c.want, last)
			}
			for _, q := range p.Requests() {
				if strings.Contains(q.Auth, aSecret) {
					t.Fatalf("host A's credentials sent to B: %s %s", q.Method, q.Path)
				}
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
	checkNothingTagged(t, reg.Host, "team/hello", remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"}))
}

// TestAuthAndTLSPush: a plain push to docker-registry with htpasswd auth,
// and to one serving TLS from a test CA (trusted through SLIPWAY_CA_FILE;
// refused without it).
func TestAuthAndTLSPush(t *testing.T) {
	app := copyApp(t, "hello")
	t.Run("htpasswd", func(t *testing.T) {
		reg := testutil.StartRegistry(t, testutil.WithBasicAuth("robot", "s3cret"))
		auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
		cfg := faultConfig(app, reg.Host+"/team", "scratch")
		if r := pushWith(t, cfg, nil); r.code != 1 || !strings.Contains(lastLine(r.stderr), "UNAUTHORIZED") {
			t.Fatalf("without credentials: %s", r)
		}
		run := pushWith(t, cfg, []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{reg.Host: "robot:s3cret"}, nil)})
		if run.code != 0 {
			t.Fatalf("push: %s", run)
		}
		checkPushed(t, reg.Host, "team/hello", run.res.Digest, auth)
	})
	t.Run("tls", func(t *testing.T) {
		reg := testutil.StartRegistry(t, testutil.WithTLS())
		ca := writeFile(t, t.TempDir(), "ca.pem", string(reg.CA))
		cfg := faultConfig(app, reg.Host+"/team", "scratch")
		if r := pushWith(t, cfg, nil); r.code != 1 {
			t.Fatalf("without the CA: %s", r)
		}
		run := pushWith(t, cfg, []string{"SLIPWAY_CA_FILE=" + ca})
		if run.code != 0 {
			t.Fatalf("push: %s", run)
		}
		tr := &http.Transport{TLSClientConfig: reg.Client().Transport.(*http.Transport).TLSClientConfig}
		checkPushed(t, reg.Host, "team/hello", run.res.Digest, remote.WithTransport(tr))
	})
}
