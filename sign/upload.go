package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// artifactWriter writes what slipway has just made (a bundle referrer, a
// signature or attestation image) with the fewest requests the OCI
// distribution spec allows, through the session transport of repo (its
// authentication, retries and manifest gate; bodies are rewound for a
// retry):
//   - a blob: one POST and one PUT that carries it (the spec's monolithic
//     upload, which every conformant registry takes), after a HEAD unless
//     it was just made; none for a blob written earlier in the same write;
//   - a manifest: one PUT.
//
// go-containerregistry's writer makes a HEAD, a POST, a PATCH and a PUT
// per blob, a HEAD before each manifest and, after a manifest with a
// subject, a referrers GET: that is 9 requests per bundle referrer where
// this makes 3, which on a real registry is as many round trips.
type artifactWriter struct {
	client *http.Client
	repo   name.Repository
}

func newArtifactWriter(repo name.Repository, tr http.RoundTripper) *artifactWriter {
	return &artifactWriter{client: &http.Client{Transport: tr, CheckRedirect: checkRedirect}, repo: repo}
}

// checkRedirect refuses what go-containerregistry's clients refuse: a
// redirect to another host given as a private, loopback, link-local or
// unspecified IP address (a registry sending the blob, or a token, to a
// service inside the network).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if from := via[0].URL.Hostname(); internalHost(from, req.URL.Hostname()) {
		return fmt.Errorf("refusing a redirect from %s to the internal address %s", from, req.URL.Hostname())
	}
	return nil
}

// internalHost reports whether to, reached from the registry from, is
// another host given as an internal IP address, in any form the Go
// dialer takes (an IPv4 address's shorter inet_aton forms included).
func internalHost(from, to string) bool {
	if to == from {
		return false
	}
	host, _, _ := strings.Cut(to, "%")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified()
	}
	// The dialer also takes an IPv4 address as 1 to 4 numbers, each
	// decimal, octal or hex ("127.1", "0x7f000001"); no DNS name has that
	// form, so another host given so is refused whatever it names.
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 0, 32); err != nil {
			return false
		}
	}
	return true
}

func (w *artifactWriter) url(path string) *url.URL {
	return &url.URL{Scheme: w.repo.Scheme(), Host: w.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s", w.repo.RepositoryStr(), path)}
}

// rewindingBody is a request body that can be sent again. The session
// transport retries a request (a 5xx, a 429, a token refreshed after a 401)
// by sending the same *http.Request again, and net/http closes the body
// after each attempt: closing rewinds it. (go-containerregistry turns
// those retries off for its own writes and retries each upload whole.)
type rewindingBody struct{ *bytes.Reader }

func (b rewindingBody) Close() error {
	_, err := b.Seek(0, io.SeekStart)
	return err
}

// do sends a request made for ctx (with body, when not nil) and fails
// unless the status is one of want.
func (w *artifactWriter) do(ctx context.Context, method string, u *url.URL, body []byte, header http.Header, want ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		req.Body = rewindingBody{bytes.NewReader(body)}
		req.GetBody = func() (io.ReadCloser, error) { return rewindingBody{bytes.NewReader(body)}, nil }
		req.ContentLength = int64(len(body))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, want...); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// exists reports whether the repository has the blob h.
func (w *artifactWriter) exists(ctx context.Context, h v1.Hash) (bool, error) {
	resp, err := w.do(ctx, http.MethodHead, w.url("blobs/"+h.String()), nil, nil, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// uploadBlob uploads b, whose digest is h, with one POST and one PUT.
func (w *artifactWriter) uploadBlob(ctx context.Context, h v1.Hash, b []byte) error {
	post := w.url("blobs/uploads/")
	resp, err := w.do(ctx, http.MethodPost, post, nil, nil, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("uploading blob %s: %w", h, err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if loc == "" {
		return fmt.Errorf("uploading blob %s: the registry gave no upload location", h)
	}
	if resp.Request != nil {
		post = resp.Request.URL // where the POST went, after redirects
	}
	u, err := post.Parse(loc)
	if err != nil {
		return fmt.Errorf("uploading blob %s: upload location %q: %w", h, loc, err)
	}
	if internalHost(post.Hostname(), u.Hostname()) {
		return fmt.Errorf("uploading blob %s: refusing the upload location %q: another host, at an internal address", h, loc)
	}
	q := u.Query()
	q.Set("digest", h.String())
	u.RawQuery = q.Encode()
	resp, err = w.do(ctx, http.MethodPut, u, b, http.Header{"Content-Type": {"application/octet-stream"}}, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("uploading blob %s: %w", h, err)
	}
	resp.Body.Close()
	return nil
}

// putBlob uploads b, whose digest is h, as st says.
func (w *artifactWriter) putBlob(ctx context.Context, h v1.Hash, b []byte, st blobState) error {
	return w.putBlobFrom(ctx, h, func() ([]byte, error) { return b, nil }, st)
}

// putBlobFrom uploads the blob h (read by read, only when it is uploaded)
// as st says.
func (w *artifactWriter) putBlobFrom(ctx context.Context, h v1.Hash, read func() ([]byte, error), st blobState) error {
	switch st {
	case blobThere:
		return nil
	case blobUnknown:
		ok, err := w.exists(ctx, h)
		if err != nil {
			return fmt.Errorf("checking blob %s: %w", h, err)
		}
		if ok {
			return nil
		}
	}
	b, err := read()
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", h, err)
	}
	return w.uploadBlob(ctx, h, b)
}

// blobState is what the writer knows of a blob before writing it.
type blobState int

const (
	blobUnknown blobState = iota // HEAD, and upload when missing
	blobFresh                    // just made: upload without asking
	blobThere                    // written earlier in this write: skip
)

// writeImage uploads img's config and layers, side by side, and then PUTs
// its manifest at ref. state says what is known of each blob.
func (w *artifactWriter) writeImage(ctx context.Context, ref name.Reference, img v1.Image, state func(v1.Hash) blobState) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallelism)
	seen := map[v1.Hash]bool{}
	put := func(h v1.Hash, read func() ([]byte, error)) {
		// A blob is uploaded once, even if the image lists it twice (a
		// .sig image holds one payload per signer, often the same): two
		// uploads of one blob at once can fail on distribution.
		st := state(h)
		if st == blobThere || seen[h] {
			return
		}
		seen[h] = true
		g.Go(func() error { return w.putBlobFrom(gctx, h, read, st) })
	}
	put(m.Config.Digest, img.RawConfigFile)
	for _, l := range m.Layers {
		put(l.Digest, func() ([]byte, error) {
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return nil, err
			}
			rc, err := layer.Compressed()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	return w.putManifest(ctx, ref, mt, raw)
}

// uploadParallelism bounds the blobs of one image uploaded at once (as
// go-containerregistry's default).
const uploadParallelism = 4

// putManifest PUTs raw, of media type mt, at ref (a tag or digest of the
// writer's repository).
func (w *artifactWriter) putManifest(ctx context.Context, ref name.Reference, mt types.MediaType, raw []byte) error {
	resp, err := w.do(ctx, http.MethodPut, w.url("manifests/"+ref.Identifier()), raw, http.Header{"Content-Type": {string(mt)}},
		http.StatusOK, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	resp.Body.Close()
	return nil
}
