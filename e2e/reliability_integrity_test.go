package e2e

// Registry faults against integrity: connection resets and lying blob
// HEADs, checked in the registry's blob store (split from
// reliability_registry_test.go).

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/faultproxy"
)

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
