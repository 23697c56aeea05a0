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
	"github.com/google/go-containerregistry/pkg/v1/remote"

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
