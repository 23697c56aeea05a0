package publish

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
)

// countingRegistry is ggcr's registry behind testutil's recording proxy.
type countingRegistry struct {
	proxy *testutil.Proxy
	host  string
}

func newCountingRegistry(t *testing.T) *countingRegistry {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	p := testutil.StartProxy(t, s.URL)
	return &countingRegistry{proxy: p, host: p.Host}
}

// take returns the requests since the last take, as "METHOD path".
func (c *countingRegistry) take() []string {
	var out []string
	for _, r := range c.proxy.Requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	c.proxy.Reset()
	return out
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func pings(reqs []string) int {
	n := 0
	for _, q := range reqs {
		if q == "GET /v2/" {
			n++
		}
	}
	return n
}

// TestSessionPingsOnce: the preflight, the image write, reads through
// RepositoryOptions and the tags share one session: one ping per
// repository for the run. A tag that already names the digest costs one
// HEAD and no write.
func TestSessionPingsOnce(t *testing.T) {
	c := newCountingRegistry(t)
	repo, err := name.NewRepository(c.host + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(256, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.CheckPush(ctx, repo); err != nil {
		t.Fatal(err)
	}
	ref, err := r.WriteIndex(ctx, repo, idx)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := r.RepositoryOptions(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref, opts...); err != nil {
		t.Fatal(err)
	}
	if err := r.Tag(ctx, ref, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	if reqs := c.take(); pings(reqs) != 1 {
		t.Errorf("%d pings for preflight, write, read and tag, want 1: %v", pings(reqs), reqs)
	}
	if err := r.Tag(ctx, ref, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	again := c.take()
	if len(again) != 1 || !strings.HasPrefix(again[0], "HEAD ") {
		t.Errorf("re-tagging with an unchanged tag made %v, want one HEAD", again)
	}

	// A fresh Registry (a new run): everything again, one ping.
	c.take()
	r2, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.CheckPush(ctx, repo); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.WriteIndex(ctx, repo, idx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Tag(ctx, ref, []string{"latest", "v2"}); err != nil {
		t.Fatal(err)
	}
	if reqs := c.take(); pings(reqs) != 1 {
		t.Errorf("%d pings in one run, want 1: %v", pings(reqs), reqs)
	}
	if got, err := remote.Head(repo.Tag("v2")); err != nil || got.Digest.String() != ref.DigestStr() {
		t.Errorf("v2 -> %v, %v", got, err)
	}
}

// TestContentCache: manifests named by digest are served from the cache
// on the next run; tags always reach the registry; a damaged entry is
// fetched again.
func TestContentCache(t *testing.T) {
	c := newCountingRegistry(t)
	repo, err := name.NewRepository(c.host + "/base")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(repo.Tag("1"), idx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "content")
	read := func() []string {
		t.Helper()
		r, err := NewRegistry()
		if err != nil {
			t.Fatal(err)
		}
		opts, err := r.CachedReadOptions(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		c.take()
		got, err := remote.Index(repo.Tag("1"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		im, err := got.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			img, err := got.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.ConfigFile(); err != nil {
				t.Fatal(err)
			}
		}
		return c.take()
	}
	first := read()
	if n := count(first, "GET /v2/base/manifests/sha256:"); n != 2 {
		t.Fatalf("first run fetched %d child manifests: %v", n, first)
	}
	second := read()
	if n := count(second, "GET /v2/base/manifests/sha256:") + count(second, "GET /v2/base/blobs/"); n != 0 {
		t.Errorf("second run fetched %d manifests or configs by digest: %v", n, second)
	}
	if n := count(second, "GET /v2/base/manifests/1"); n != 1 {
		t.Errorf("second run asked for the tag %d times, want 1", n)
	}
	// Damage every entry: each is refused and fetched again.
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				return rerr
			}
			b[len(b)-1] ^= 1
			err = os.WriteFile(p, b, 0o600)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	third := read()
	if n := count(third, "GET /v2/base/manifests/sha256:"); n != 2 {
		t.Errorf("after damage, %d child manifests fetched, want 2: %v", n, third)
	}
}
