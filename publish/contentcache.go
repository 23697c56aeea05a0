package publish

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// MaxCachedContent bounds what the content cache keeps per response:
// manifests and image configs, not layers.
const MaxCachedContent = 1 << 20

// contentCache serves GETs of manifests and blobs named by digest from a
// local store, as what a registry returns for a digest never changes: an
// unchanged rerun reads its base image's platform manifests and configs
// from disk instead of the registry. Entries are keyed by registry,
// repository and digest (a digest found in one repository says nothing
// about another), and a body is checked against its digest when stored
// and again whenever it is served; anything else goes to inner untouched.
type contentCache struct {
	inner http.RoundTripper
	dir   string
}

// byDigest matches the path of a manifest or blob named by digest.
var byDigest = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/(sha256:[0-9a-f]{64})$`)

// CachedReadOptions are RemoteOptions whose GETs of manifests and small
// blobs by digest are kept in, and served from, dir (created private).
// For reads only (bases): the registry is still asked for every tag.
func (r *Registry) CachedReadOptions(ctx context.Context, dir string) ([]remote.Option, error) {
	if err := cachedir.Ensure(dir); err != nil {
		return nil, err
	}
	return append(r.RemoteOptions(ctx), remote.WithTransport(&contentCache{inner: r.transport, dir: dir})), nil
}

// cacheHeader is the first line of a cache entry.
type cacheHeader struct {
	ContentType string `json:"content_type"`
}

func (c *contentCache) RoundTrip(req *http.Request) (*http.Response, error) {
	m := byDigest.FindStringSubmatch(req.URL.Path)
	if req.Method != http.MethodGet || m == nil {
		return c.inner.RoundTrip(req)
	}
	digest := m[3]
	key := sha256.Sum256([]byte(req.URL.Host + "/" + m[1] + "/" + m[2] + "/" + digest))
	h := hex.EncodeToString(key[:])
	path := filepath.Join(c.dir, h[:2], h[2:])
	if resp := c.serve(req, path, digest); resp != nil {
		return resp, nil
	}
	resp, err := c.inner.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength < 0 || resp.ContentLength > MaxCachedContent {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCachedContent+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if matches(body, digest) {
		c.store(path, resp.Header.Get("Content-Type"), body)
	}
	return resp, nil
}

// serve answers req from the entry at path, or returns nil.
func (c *contentCache) serve(req *http.Request, path, digest string) *http.Response {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	line, body, ok := bytes.Cut(b, []byte("\n"))
	var hdr cacheHeader
	if !ok || json.Unmarshal(line, &hdr) != nil || !matches(body, digest) {
		_ = os.Remove(path) // damaged: fetch it again
		return nil
	}
	cachedir.Touch(path) // used: kept by cache pruning
	h := http.Header{}
	if hdr.ContentType != "" {
		h.Set("Content-Type", hdr.ContentType)
	}
	h.Set("Docker-Content-Digest", digest)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

// store keeps body at path; a failure only costs the next run a request.
func (c *contentCache) store(path, contentType string, body []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	_ = atomicfile.Write(path, 0o600, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		line, err := json.Marshal(cacheHeader{ContentType: contentType})
		if err != nil {
			return err
		}
		bw.Write(line)
		bw.WriteByte('\n')
		bw.Write(body)
		return bw.Flush()
	})
}

// matches reports whether body's sha256 is digest ("sha256:<hex>").
func matches(body []byte, digest string) bool {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("sha256:%x", sum) == digest
}
