package faultproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func backend(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	var cur int
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur++
		mu.Unlock()
		defer func() { mu.Lock(); cur--; mu.Unlock() }()
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(100 * time.Millisecond)
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Docker-Content-Digest", "sha256:real")
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "0123456789")
	}))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, method, url string) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestClassify(t *testing.T) {
	cases := []struct{ method, path string }{
		{"GET", "/v2/"}, {"HEAD", "/v2/a/b/blobs/sha256:x"}, {"GET", "/v2/a/blobs/sha256:x"},
		{"POST", "/v2/a/blobs/uploads/"}, {"PATCH", "/v2/a/blobs/uploads/u1"}, {"PUT", "/v2/a/blobs/uploads/u1"},
		{"HEAD", "/v2/a/manifests/latest"}, {"GET", "/v2/a/manifests/sha256:x"}, {"PUT", "/v2/a/manifests/v1"},
		{"GET", "/token"}, {"DELETE", "/v2/a/manifests/v1"},
	}
	want := []Class{Ping, BlobHead, BlobGet, UploadPost, UploadPatch, UploadPut, ManifestHead, ManifestGet, ManifestPut, Token, Other}
	for i, c := range cases {
		r := httptest.NewRequest(c.method, c.path, nil)
		if got := Classify(r); got != want[i] {
			t.Errorf("%s %s = %s, want %s", c.method, c.path, got, want[i])
		}
	}
}

func TestRulesAndLog(t *testing.T) {
	p := Start(t, backend(t).URL)
	p.Add(
		&Rule{Class: BlobGet, Times: 2, Action: Status(503, "1")},
		&Rule{Class: ManifestGet, Action: RewriteHeader("Docker-Content-Digest", func(string) string { return "sha256:forged" })},
		&Rule{Class: ManifestHead, Times: 1, Action: Truncate(4)},
	)
	blob := p.URL + "/v2/a/blobs/sha256:x"
	for i := 0; i < 2; i++ {
		resp, _, err := get(t, "GET", blob)
		if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("fault %d: %v %v", i, resp, err)
		}
	}
	resp, body, err := get(t, "GET", blob)
	if err != nil || resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("after the budget: %v %q %v", resp, body, err)
	}
	if resp.Header.Get("X-Host") != p.Host {
		t.Fatalf("backend saw Host %q, want the proxy's %q", resp.Header.Get("X-Host"), p.Host)
	}
	resp, _, _ = get(t, "GET", p.URL+"/v2/a/manifests/latest")
	if d := resp.Header.Get("Docker-Content-Digest"); d != "sha256:forged" {
		t.Fatalf("digest header %q", d)
	}
	resp, body, err = get(t, "GET", p.URL+"/v2/a/manifests/latest")
	if err != nil || body != "0123456789" {
		t.Fatalf("GET after HEAD-only rule: %q %v", body, err)
	}
	f := p.Faults()
	if f[BlobGet]["503+retry-after"] != 2 || f[ManifestGet]["rewrite-docker-content-digest"] != 2 || len(f) != 2 {
		t.Fatalf("faults = %v\n%s", f, p)
	}
	reqs := p.Requests()
	if len(reqs) != 5 || reqs[0].Seq != 0 || reqs[4].Seq != 4 || reqs[2].Fault != "" {
		t.Fatalf("log:\n%s", p)
	}
}

func TestResetAndTruncate(t *testing.T) {
	p := Start(t, backend(t).URL)
	p.Add(&Rule{Class: BlobGet, Times: 1, Action: ResetResponseAfter(3)},
		&Rule{Class: BlobGet, Times: 1, Action: Truncate(4)},
		&Rule{Class: UploadPatch, Times: 1, Action: ResetRequestAfter(5)})
	_, body, err := get(t, "GET", p.URL+"/v2/a/blobs/sha256:x")
	if err == nil || body != "012" {
		t.Fatalf("reset mid-body: body %q err %v", body, err)
	}
	resp, body, err := get(t, "GET", p.URL+"/v2/a/blobs/sha256:x")
	if err != nil || body != "0123" || resp.ContentLength != 4 {
		t.Fatalf("truncate: %q %v", body, err)
	}
	req, _ := http.NewRequest("PATCH", p.URL+"/v2/a/blobs/uploads/u", strings.NewReader(strings.Repeat("z", 1<<20)))
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("PATCH through a reset: %s", resp.Status)
	}
	// The client sees the reset before the handler logs it.
	for i := 0; i < 100 && len(p.Requests()) < 3; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if f := p.Faults(); f[UploadPatch]["reset-request"] != 1 || f[BlobGet]["reset-response"] != 1 || f[BlobGet]["truncate"] != 1 {
		t.Fatalf("faults = %v", f)
	}
}

func TestEndlessIsBounded(t *testing.T) {
	p := Start(t, backend(t).URL)
	p.Add(&Rule{Class: ManifestGet, Action: Endless(500, "application/json", 4<<20, 5*time.Second)})
	start := time.Now()
	resp, err := http.Get(p.URL + "/v2/a/manifests/x")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n < 4<<20 || time.Since(start) > 5*time.Second {
		t.Fatalf("endless body: %d bytes in %s", n, time.Since(start))
	}
}

func TestMaxInFlight(t *testing.T) {
	p := Start(t, backend(t).URL)
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, "GET", p.URL+"/v2/a/blobs/x?slow=1")
		}()
	}
	wg.Wait()
	if m := p.MaxInFlight(); m < 2 || m > 5 {
		t.Fatalf("max in flight = %d", m)
	}
	p.Reset()
	get(t, "GET", p.URL+"/v2/a/blobs/x")
	if m := p.MaxInFlight(); m != 1 {
		t.Fatalf("after Reset, max in flight = %d", m)
	}
}

func TestToken(t *testing.T) {
	p := Start(t, "", WithToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"token":"t"}`)
	})))
	_, body, err := get(t, "GET", p.URL+TokenPath+"?scope=x")
	if err != nil || body != `{"token":"t"}` {
		t.Fatalf("token: %q %v", body, err)
	}
	resp, _, _ := get(t, "GET", p.URL+"/v2/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("no target: %d", resp.StatusCode)
	}
}

func TestWithAddr(t *testing.T) {
	p := Start(t, backend(t).URL, WithAddr("127.0.0.2:0"))
	if !strings.HasPrefix(p.Host, "127.0.0.2:") {
		t.Fatalf("host %s", p.Host)
	}
	if _, body, err := get(t, "GET", p.URL+"/v2/a/blobs/x"); err != nil || body != "0123456789" {
		t.Fatalf("%q %v", body, err)
	}
}

// TestRequestsWaitsForAbortedResponses: a client that stops reading a big
// response and goes away must still find its request in the log (the
// e2e flake of TestOversizedResponses/50_MiB_base_manifest).
func TestRequestsWaitsForAbortedResponses(t *testing.T) {
	backend := httptest.NewServer(http.NotFoundHandler())
	defer backend.Close()
	p := Start(t, backend.URL)
	p.Add(&Rule{Class: ManifestGet, Action: Body("huge", bytes.Repeat([]byte(" "), 64<<20), nil)})
	resp, err := http.Get(p.URL + "/v2/x/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, resp.Body, 1<<20)
	resp.Body.Close() // gives up after 1 MiB, as a size-limited client does
	if got := p.Faults()[ManifestGet]["huge"]; got != 1 {
		t.Fatalf("faults = %v, want the aborted request logged\n%s", p.Faults(), p)
	}
}
