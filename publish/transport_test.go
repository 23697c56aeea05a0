package publish

import (
	"context"
	"errors"
	"fmt"
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
