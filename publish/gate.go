package publish

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// gateKey is the context key of a manifest gate (WithManifestGate).
type gateKey struct{}

// WithManifestGate returns a context whose requests through a Registry's
// sessions may read and upload blobs at once, but PUT a manifest (by tag
// or by digest) only after wait returns nil; when it returns an error, the
// manifest is not written and the request fails with it. So what refers
// to an image (its signatures' tags and referrers) can be prepared while
// the image is being written, and still never names a missing manifest.
func WithManifestGate(ctx context.Context, wait func(context.Context) error) context.Context {
	return context.WithValue(ctx, gateKey{}, wait)
}

// manifestGate holds back the manifest PUTs of requests whose context
// carries a gate.
type manifestGate struct{ inner http.RoundTripper }

func (t *manifestGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if wait, ok := req.Context().Value(gateKey{}).(func(context.Context) error); ok &&
		req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
		if err := wait(req.Context()); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, fmt.Errorf("not writing %s: %w", req.URL.Path, err)
		}
	}
	return t.inner.RoundTrip(req)
}
