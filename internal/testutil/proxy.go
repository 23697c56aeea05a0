package testutil

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Request is one request seen by a Proxy.
type Request struct {
	Seq    int
	Method string
	Path   string
	Status int
	// BodyBytes is the number of request body bytes forwarded.
	BodyBytes int64
	// Query is the raw query string.
	Query string
}

// Proxy is a recording reverse proxy on 127.0.0.1 in front of a registry.
// It keeps the Host header of the client, so a registry with relative URLs
// sends upload locations back through the proxy.
type Proxy struct {
	// Host is the proxy's "127.0.0.1:PORT".
	Host string
	srv  *httptest.Server

	mu   sync.Mutex
	reqs []Request
	// Intercept, when set, may answer a request itself (return true).
	Intercept func(w http.ResponseWriter, r *http.Request) bool
}

// StartProxy starts a Proxy forwarding to target (http://127.0.0.1:PORT).
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	// Clients that give up (a killed slipway) are expected; don't log them.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cr := &countingReader{r: r.Body}
		if r.Body != nil {
			r.Body = cr
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		p.mu.Lock()
		intercept := p.Intercept
		p.mu.Unlock()
		if intercept == nil || !intercept(rec, r) {
			rp.ServeHTTP(rec, r)
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, Request{Seq: len(p.reqs), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: rec.status, BodyBytes: cr.n})
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

// SetIntercept installs (or with nil removes) a request interceptor.
func (p *Proxy) SetIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.Intercept = f
	p.mu.Unlock()
}

// Requests returns the requests seen so far, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Reset forgets the requests seen so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.reqs = nil
	p.mu.Unlock()
}

// BlobUploadBytes sums the body bytes of blob upload requests (POST, PATCH
// and PUT under /blobs/uploads/).
func (p *Proxy) BlobUploadBytes() int64 {
	var n int64
	for _, r := range p.Requests() {
		if strings.Contains(r.Path, "/blobs/uploads/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			n += r.BodyBytes
		}
	}
	return n
}

// Mounts returns the query strings of cross-repository blob mounts
// (POST …/blobs/uploads/?mount=…&from=…) that the registry accepted (201).
func (p *Proxy) Mounts() []string {
	var out []string
	for _, r := range p.Requests() {
		if r.Method == http.MethodPost && strings.Contains(r.Query, "mount=") && r.Status == http.StatusCreated {
			out = append(out, r.Query)
		}
	}
	return out
}

// String summarises the requests, one per line.
func (p *Proxy) String() string {
	var b strings.Builder
	for _, r := range p.Requests() {
		fmt.Fprintf(&b, "%d %s %s -> %d (%d bytes)\n", r.Seq, r.Method, r.Path, r.Status, r.BodyBytes)
	}
	return b.String()
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
