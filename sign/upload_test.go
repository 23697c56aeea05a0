package sign

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// countingRegistry is go-containerregistry's registry (referrers API off)
// counting requests by method; stop counting with reset.
type countingRegistry struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingRegistry) start(t *testing.T) string {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.Method]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func (c *countingRegistry) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

func total(n map[string]int) int {
	t := 0
	for _, v := range n {
		t += v
	}
	return t
}

// Issue 13: with the session transport, what WriteRemote makes goes up
// with the fewest requests (each new blob one POST and one PUT carrying
// it, each manifest one PUT): about half of go-containerregistry's for a
// changed image's signatures and attestations in both formats, and what
// is written verifies the same.
func TestWriteRemoteFewerRequests(t *testing.T) {
	if got, _, _ := v1.SHA256(bytes.NewReader(emptyJSON)); got != emptyDigest {
		t.Fatalf("emptyDigest %s, want %s", emptyDigest, got)
	}
	key := testKey(t, "cosign")
	s, err := NewSigner(SignerConfig{Key: key, Format: FormatBoth})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]map[string]int{}
	for _, mode := range []struct {
		name string
		tr   http.RoundTripper
	}{{"go-containerregistry", nil}, {"session transport", http.DefaultTransport}} {
		c := &countingRegistry{n: map[string]int{}}
		repo := mustRepo(t, c.start(t)+"/app")
		idx := testIndex(t)
		d := pushIndex(t, repo, "v1", idx)
		rep := testReport(t, idx, time.Now(), scan.SeverityHigh)
		sigs, err := s.Sign(context.Background(), idx, repo, WithSBOM(testSBOM), WithVulnReport(rep), WithProvenance(testProvenance()))
		if err != nil {
			t.Fatal(err)
		}
		c.reset()
		if err := WriteRemote(context.Background(), repo, sigs, nil, mode.tr); err != nil {
			t.Fatalf("%s: WriteRemote: %v", mode.name, err)
		}
		counts[mode.name] = c.reset()
		if mode.tr != nil && counts[mode.name][http.MethodPatch] != 0 {
			t.Errorf("%s: %d PATCH requests, want monolithic uploads", mode.name, counts[mode.name][http.MethodPatch])
		}
		// Both formats are there and verify, with every attestation.
		pol := Policy{Keys: []*PublicKey{key.Public()}, RequireAttestations: []string{vocab.KindSBOM, vocab.KindVuln, vocab.KindProvenance}}
		if _, err := Verify(context.Background(), d, pol); err != nil {
			t.Fatalf("%s: verify: %v", mode.name, err)
		}
		for _, suffix := range []string{"sig", "att"} {
			sigTagImage(t, d, suffix)
		}
		if _, err := remote.Head(referrersTag(d)); err != nil {
			t.Fatalf("%s: no referrers tag: %v", mode.name, err)
		}
		// And an unchanged rewrite writes nothing.
		if err := WriteRemote(context.Background(), repo, sigs, nil, mode.tr); err != nil {
			t.Fatal(err)
		}
		if n := c.reset(); n[http.MethodPut]+n[http.MethodPost]+n[http.MethodPatch] != 0 {
			t.Fatalf("%s: an unchanged rewrite wrote: %v", mode.name, n)
		}
	}
	ggcr, lean := total(counts["go-containerregistry"]), total(counts["session transport"])
	t.Logf("requests: go-containerregistry %d %v, session transport %d %v", ggcr, counts["go-containerregistry"], lean, counts["session transport"])
	// 70 and 138 when written: no PATCH, no HEAD before a blob just made
	// or before a referrer, no referrers GET after one.
	if 100*lean > 55*ggcr {
		t.Fatalf("session transport made %d requests, go-containerregistry %d: want at most 55%%", lean, ggcr)
	}
}

// The session transport retries a PUT that got a 503 by sending the same
// request again; the body must go again too (a body read to its end
// would make the retry fail with "ContentLength=N with Body length 0").
func TestArtifactWriterRetriesWithBody(t *testing.T) {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var mu sync.Mutex
	failed := map[string]bool{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := ""
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/"):
			kind = "blob"
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
			kind = "manifest"
		}
		mu.Lock()
		first := kind != "" && !failed[kind]
		failed[kind] = failed[kind] || kind != ""
		mu.Unlock()
		if first {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	repo := mustRepo(t, strings.TrimPrefix(s.URL, "http://")+"/app")
	tr := transport.NewRetry(http.DefaultTransport, transport.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3}),
		transport.WithRetryStatusCodes(http.StatusServiceUnavailable))
	img, err := random.Image(64, 2)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	w := newArtifactWriter(repo, tr)
	if err := w.writeImage(context.Background(), repo.Tag("v1"), img, func(v1.Hash) blobState { return blobFresh }); err != nil {
		t.Fatalf("writeImage through a retrying transport: %v", err)
	}
	if !failed["blob"] || !failed["manifest"] {
		t.Fatalf("the registry failed no PUT: %v", failed)
	}
	got, err := remote.Image(repo.Tag("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if gd, err := got.Digest(); err != nil || gd != d {
		t.Fatalf("stored %s (%v), want %s", gd, err, d)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("stored image: %v", err)
	}
}

// A blob an image lists twice (a .sig image with two signers' identical
// payloads) is uploaded once.
func TestArtifactWriterUploadsABlobOnce(t *testing.T) {
	c := &countingRegistry{n: map[string]int{}}
	repo := mustRepo(t, c.start(t)+"/app")
	l, err := random.Layer(64, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l, l)
	if err != nil {
		t.Fatal(err)
	}
	w := newArtifactWriter(repo, http.DefaultTransport)
	if err := w.writeImage(context.Background(), repo.Tag("v1"), img, func(v1.Hash) blobState { return blobFresh }); err != nil {
		t.Fatal(err)
	}
	// The config and the layer: two POSTs, not three.
	if n := c.reset(); n[http.MethodPost] != 2 {
		t.Fatalf("uploads: %v, want 2 POSTs", n)
	}
}

// An upload location on another host at an internal address is refused,
// as go-containerregistry refuses it: the blob is not sent there.
func TestArtifactWriterRefusesInternalLocation(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "http://169.254.169.254/latest/upload")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		t.Errorf("unexpected %s %s", r.Method, r.URL)
	}))
	t.Cleanup(s.Close)
	w := newArtifactWriter(mustRepo(t, strings.TrimPrefix(s.URL, "http://")+"/app"), http.DefaultTransport)
	err := w.uploadBlob(context.Background(), emptyDigest, emptyJSON)
	if err == nil || !strings.Contains(err.Error(), "internal address") {
		t.Fatalf("err = %v, want the location refused", err)
	}
	for _, c := range []struct {
		from, to string
		internal bool
	}{
		{"registry.example", "registry.example", false},
		{"127.0.0.1", "127.0.0.1", false},
		{"registry.example", "storage.example", false},
		{"registry.example", "10.1.2.3", true},
		{"registry.example", "169.254.169.254", true},
		{"registry.example", "::1", true},
		{"registry.example", "::ffff:127.0.0.1", true},
		{"registry.example", "127.1", true},
		{"registry.example", "0x7f000001", true},
		{"registry.example", "8.8.8.8", false},
		{"registry.example", "cafe.be", false},
	} {
		if got := internalHost(c.from, c.to); got != c.internal {
			t.Errorf("internalHost(%q, %q) = %v, want %v", c.from, c.to, got, c.internal)
		}
	}
}
