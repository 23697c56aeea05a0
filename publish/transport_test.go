package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": -5 * time.Second,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRetryAfterTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", r.URL.Query().Get("ra"))
		switch r.URL.Path {
		case "/429":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	tr := &retryAfter{inner: http.DefaultTransport, max: 300 * time.Millisecond}
	do := func(ctx context.Context, path string) time.Duration {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return time.Since(start)
	}
	if d := do(context.Background(), "/429?ra=1"); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("429, Retry-After 1 capped at 300ms: returned after %s", d)
	}
	if d := do(context.Background(), "/500?ra=1"); d > 200*time.Millisecond {
		t.Errorf("500 with Retry-After held %s (only 429/503 are rate limits)", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if d := do(ctx, "/429?ra=1"); d > 250*time.Millisecond {
		t.Errorf("cancelled context: held %s", d)
	}
}

func TestWithStatus(t *testing.T) {
	coded := &transport.Error{StatusCode: 503, Errors: []transport.Diagnostic{{Code: transport.UnavailableErrorCode, Message: "down"}}}
	err := withStatus(fmt.Errorf("PUT x: %w", coded))
	if !strings.HasSuffix(err.Error(), "(HTTP 503 Service Unavailable)") {
		t.Fatalf("coded error: %q", err)
	}
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != 503 {
		t.Fatalf("errors.As lost the transport error: %v", err)
	}
	plain := &transport.Error{StatusCode: 502}
	if got := withStatus(plain); got != error(plain) {
		t.Fatalf("message naming the status was rewrapped: %q", got)
	}
	other := errors.New("dial tcp: refused")
	if withStatus(other) != other {
		t.Fatal("non-HTTP error rewrapped")
	}
}

func TestManifestGuard(t *testing.T) {
	body := []byte(`{"schemaVersion":2}`)
	sum := sha256.Sum256(body)
	good := "sha256:" + hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "good":
			w.Header().Set("Docker-Content-Digest", good)
			w.Write(body)
		case "nodigest":
			w.Write(body)
		case "forged":
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			w.Write(body)
		case "big":
			w.Header().Set("Content-Length", fmt.Sprint(50<<20))
			w.Write(make([]byte, 1<<20))
		case "chunked":
			for i := 0; i < 5; i++ {
				w.Write(make([]byte, 1<<20))
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()
	tr := &manifestGuard{inner: http.DefaultTransport}
	for c, wantErr := range map[string]string{"good": "", "nodigest": "", "forged": "digest mismatch", "big": "exceeds", "chunked": "exceeds"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/a/manifests/1?case="+c, nil)
		resp, err := tr.RoundTrip(req)
		if wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", c, err)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != string(body) {
				t.Errorf("%s: body %q", c, b)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", c, err, wantErr)
		}
	}
}
