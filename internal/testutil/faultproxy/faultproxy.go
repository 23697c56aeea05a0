// Package faultproxy is a fault-injecting reverse proxy for registry tests:
// it sits on 127.0.0.1 in front of a registry (docker-registry with
// relativeurls: true), classifies every request by endpoint, applies the
// first matching rule (a status code, a connection reset after n bytes, a
// delay, rewritten headers, other bytes, a truncated or endless body), and
// records every request in order with the fault it got.
//
// The client's Host header is kept, so upload Locations the registry
// returns (relative) come back through the proxy.
//
// This file is over 400 lines on purpose: the classifier, the rule
// matching and the request log are one mechanism, read together; the
// fault actions themselves are in actions.go.
package faultproxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Class is an endpoint class of the distribution API.
type Class string

// The endpoint classes rules match on.
const (
	Ping         Class = "ping"          // GET/HEAD /v2/
	BlobHead     Class = "blob-head"     // HEAD /v2/<name>/blobs/<digest>
	BlobGet      Class = "blob-get"      // GET /v2/<name>/blobs/<digest>
	UploadPost   Class = "upload-post"   // POST /v2/<name>/blobs/uploads/
	UploadPatch  Class = "upload-patch"  // PATCH /v2/<name>/blobs/uploads/<id>
	UploadPut    Class = "upload-put"    // PUT /v2/<name>/blobs/uploads/<id>?digest=
	ManifestHead Class = "manifest-head" // HEAD /v2/<name>/manifests/<ref>
	ManifestGet  Class = "manifest-get"  // GET /v2/<name>/manifests/<ref>
	ManifestPut  Class = "manifest-put"  // PUT /v2/<name>/manifests/<ref>
	Token        Class = "token"         // the token endpoint (see WithToken)
	Other        Class = "other"
)

// Classes are the endpoint classes of a push and pull, in protocol order.
var Classes = []Class{BlobHead, BlobGet, UploadPost, UploadPatch, UploadPut, ManifestHead, ManifestGet, ManifestPut, Token}

// TokenPath is where the proxy serves the token endpoint set with WithToken.
const TokenPath = "/token"

// Classify returns the endpoint class of r.
func Classify(r *http.Request) Class {
	p := r.URL.Path
	switch {
	case p == TokenPath:
		return Token
	case p == "/v2/" || p == "/v2":
		return Ping
	case strings.Contains(p, "/blobs/uploads/"):
		switch r.Method {
		case http.MethodPost:
			return UploadPost
		case http.MethodPatch:
			return UploadPatch
		case http.MethodPut:
			return UploadPut
		}
	case strings.Contains(p, "/blobs/"):
		switch r.Method {
		case http.MethodHead:
			return BlobHead
		case http.MethodGet:
			return BlobGet
		}
	case strings.Contains(p, "/manifests/"):
		switch r.Method {
		case http.MethodHead:
			return ManifestHead
		case http.MethodGet:
			return ManifestGet
		case http.MethodPut:
			return ManifestPut
		}
	}
	return Other
}

// Rule applies Action to requests of Class (any class when empty) that
// also satisfy Match (when set): to the first Times of them, or to every
// one when Times is 0. Rules are tried in the order they were added; the
// first with budget left wins.
type Rule struct {
	Class Class
	// Match, when set, must also hold (e.g. a path containing a digest).
	Match func(*http.Request) bool
	// Times bounds how many requests get the fault; 0 means all.
	Times  int
	Action Action

	used int
}

// Action is what a rule does to a request.
type Action struct {
	// Kind names the fault in the log and the counts.
	Kind string
	// serve answers the request; forward sends it to the registry and
	// returns its response (status, headers, body) unwritten.
	serve func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response)
}

// Request is one request seen by the proxy.
type Request struct {
	Seq    int
	Class  Class
	Method string
	// Path is the URL path; Query the raw query.
	Path, Query string
	// Host is the Host header the client sent.
	Host string
	// Auth is the Authorization header the client sent ("" when none).
	Auth      string
	UserAgent string
	// Fault is the Kind of the action applied ("" when forwarded as is).
	Fault  string
	Status int
	// In and Out count request and response body bytes.
	In, Out    int64
	Start, End time.Time
}

// Proxy is a running fault proxy.
type Proxy struct {
	// Host is "127.0.0.1:PORT"; URL is "http://" + Host.
	Host, URL string

	srv   *httptest.Server
	token http.Handler
	addr  string

	mu       sync.Mutex
	target   *url.URL
	rp       *httputil.ReverseProxy
	rules    []*Rule
	reqs     []Request
	inflight int
	maxIn    int
}

// Option configures Start.
type Option func(*Proxy)

// WithToken serves h at TokenPath (a token server for the registry's
// "auth: token:" realm); rules of class Token apply to it.
func WithToken(h http.Handler) Option { return func(p *Proxy) { p.token = h } }

// WithAddr listens on addr (e.g. "127.0.0.2:0", a second loopback address
// for a decoy) instead of 127.0.0.1:0.
func WithAddr(addr string) Option { return func(p *Proxy) { p.addr = addr } }

// Start starts a proxy on 127.0.0.1. target ("http://127.0.0.1:PORT") may be
// empty and set later with SetTarget (when the registry's config must name
// the proxy, e.g. as its token realm).
func Start(t testing.TB, target string, opts ...Option) *Proxy {
	t.Helper()
	p := &Proxy{}
	for _, o := range opts {
		o(p)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = nil
	if p.addr != "" {
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		p.srv.Listener.Close()
		p.srv.Listener = l
	}
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	if target != "" {
		if err := p.SetTarget(target); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// SetTarget sets the registry URL requests are forwarded to.
func (p *Proxy) SetTarget(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// Keep the client's Host, so relative and absolute URLs the
			// registry builds name the proxy.
			pr.Out.Host = pr.In.Host
		},
		ErrorLog: nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.mu.Lock()
	p.target, p.rp = u, rp
	p.mu.Unlock()
	return nil
}

// Add appends rules.
func (p *Proxy) Add(rules ...*Rule) {
	p.mu.Lock()
	p.rules = append(p.rules, rules...)
	p.mu.Unlock()
}

// Clear removes every rule (the log is kept).
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Reset forgets the log and the in-flight maximum.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.reqs, p.maxIn = nil, 0
	p.mu.Unlock()
}

// settleTimeout bounds how long Requests waits for requests in flight.
const settleTimeout = 5 * time.Second

// Requests returns the log, in arrival order. A request is logged when the
// proxy has finished answering it, which can be after the client gave up
// (slipway stops reading an oversized body and exits while the proxy still
// writes it): Requests first waits, up to 5 s, for the requests in flight.
func (p *Proxy) Requests() []Request {
	deadline := time.Now().Add(settleTimeout)
	for {
		p.mu.Lock()
		if p.inflight == 0 || time.Now().After(deadline) {
			defer p.mu.Unlock()
			return append([]Request(nil), p.reqs...)
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// MaxInFlight is the largest number of requests the proxy was serving at
// once since the last Reset.
func (p *Proxy) MaxInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxIn
}

// Faults counts the faults injected: class → kind → count.
func (p *Proxy) Faults() map[Class]map[string]int {
	out := map[Class]map[string]int{}
	for _, r := range p.Requests() {
		if r.Fault == "" {
			continue
		}
		if out[r.Class] == nil {
			out[r.Class] = map[string]int{}
		}
		out[r.Class][r.Fault]++
	}
	return out
}

// Count returns how many logged requests are of class c.
func (p *Proxy) Count(c Class) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Class == c {
			n++
		}
	}
	return n
}

// String is the log, one request per line (for failure messages).
func (p *Proxy) String() string {
	var b strings.Builder
	for _, r := range p.Requests() {
		f := ""
		if r.Fault != "" {
			f = " [" + r.Fault + "]"
		}
		q := ""
		if r.Query != "" {
			q = "?" + r.Query
		}
		fmt.Fprintf(&b, "%3d %-13s %s %s%s -> %d in=%d out=%d%s\n", r.Seq, r.Class, r.Method, r.Path, q, r.Status, r.In, r.Out, f)
	}
	return b.String()
}

func (p *Proxy) pick(r *http.Request, c Class) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if rule.Class != "" && rule.Class != c {
			continue
		}
		if rule.Times > 0 && rule.used >= rule.Times {
			continue
		}
		if rule.Match != nil && !rule.Match(r) {
			continue
		}
		rule.used++
		return rule
	}
	return nil
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	c := Classify(r)
	p.mu.Lock()
	p.inflight++
	if p.inflight > p.maxIn {
		p.maxIn = p.inflight
	}
	rec := Request{Class: c, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
		Auth: r.Header.Get("Authorization"), UserAgent: r.UserAgent(), Start: time.Now()}
	p.mu.Unlock()

	in := &countReader{r: r.Body}
	if r.Body != nil {
		r.Body = in
	}
	cw := &countWriter{ResponseWriter: w, status: http.StatusOK}
	rule := p.pick(r, c)
	if rule != nil {
		rec.Fault = rule.Action.Kind
		rule.Action.serve(cw, r, p.forward)
	} else if resp := p.forward(r); resp != nil {
		copyResponse(cw, resp, -1)
	}

	p.mu.Lock()
	p.inflight--
	rec.Seq = len(p.reqs)
	rec.Status, rec.In, rec.Out, rec.End = cw.status, in.n, cw.n, time.Now()
	p.reqs = append(p.reqs, rec)
	p.mu.Unlock()
}

// forward sends r to the registry (or the token handler) and returns the
// response, with its body still to be read. It returns a 502 response when
// no target is set or the registry cannot be reached.
func (p *Proxy) forward(r *http.Request) *http.Response {
	if Classify(r) == Token && p.token != nil {
		rec := httptest.NewRecorder()
		p.token.ServeHTTP(rec, r)
		return rec.Result()
	}
	p.mu.Lock()
	rp := p.rp
	p.mu.Unlock()
	if rp == nil {
		return &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}
	}
	// Let the reverse proxy do the hop-by-hop work, capturing the response.
	pr, pw := io.Pipe()
	cap := &captureWriter{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		// The reverse proxy aborts (panics with http.ErrAbortHandler) when
		// the reader goes away mid-body, as truncating actions do.
		defer func() {
			cap.writeHeaderOnce(http.StatusBadGateway)
			pw.Close()
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
		}()
		rp.ServeHTTP(cap, r)
	}()
	<-cap.ready
	return &http.Response{StatusCode: cap.status, Header: cap.header, Body: pr, ContentLength: contentLength(cap.header)}
}

func contentLength(h http.Header) int64 {
	var n int64 = -1
	if v := h.Get("Content-Length"); v != "" {
		fmt.Sscan(v, &n)
	}
	return n
}

// copyResponse writes resp to w, at most limit body bytes when limit ≥ 0.
func copyResponse(w http.ResponseWriter, resp *http.Response, limit int64) int64 {
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if limit >= 0 {
		body = io.LimitReader(resp.Body, limit)
	}
	n, _ := io.Copy(w, body)
	return n
}

type captureWriter struct {
	header http.Header
	status int
	body   *io.PipeWriter
	once   sync.Once
	ready  chan struct{}
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) writeHeaderOnce(code int) {
	c.once.Do(func() {
		c.status = code
		close(c.ready)
	})
}

func (c *captureWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		return
	}
	c.writeHeaderOnce(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.writeHeaderOnce(http.StatusOK)
	return c.body.Write(b)
}

func (c *captureWriter) Flush() {}

type countReader struct {
	r io.ReadCloser
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countReader) Close() error { return c.r.Close() }

type countWriter struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
}

func (c *countWriter) WriteHeader(code int) {
	if !c.wrote {
		c.status, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countWriter) Write(b []byte) (int, error) {
	c.wrote = true
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// reset hijacks the connection behind w and closes it with an RST.
func reset(w http.ResponseWriter) {
	if cw, ok := w.(*countWriter); ok {
		if !cw.wrote {
			cw.status = 0 // no response
		}
		w = cw.ResponseWriter
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: response writer cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// SortedKinds lists the fault kinds in counts, sorted (for reports).
func SortedKinds(counts map[Class]map[string]int) []string {
	seen := map[string]bool{}
	for _, m := range counts {
		for k := range m {
			seen[k] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
