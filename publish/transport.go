package publish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MaxRetryAfter caps how long a Retry-After header can hold a request back:
// long enough for a rate limiter to recover, short enough that an
// unattended run never stalls on a registry asking for an hour.
const MaxRetryAfter = 10 * time.Second

// transientStatuses are retried by the session transports, as
// go-containerregistry retries them for every other request.
var transientStatuses = []int{
	http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
}

// retryAfter honours Retry-After on 429 and 503 responses: the response
// reaches the caller (and its retry loop, whose own backoff then follows)
// only after the time the registry asked for, capped at max.
// go-containerregistry's retries ignore the header.
type retryAfter struct {
	inner http.RoundTripper
	max   time.Duration
}

func (t *retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if d <= 0 {
		return resp, nil
	}
	d = min(d, t.max)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-req.Context().Done():
	}
	return resp, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3);
// zero when absent or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// retryBackoff is the default backoff of every remote call: five tries,
// 0.5 s, 1 s, 2 s and 4 s apart. go-containerregistry's default (three
// tries) is shared by every request of one blob upload (existence check,
// POST, PATCH, PUT), so a registry flaky on two of them fails the push.
var retryBackoff = remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 5}

// withStatus adds the HTTP status to a registry error whose message does
// not name it (go-containerregistry prints only the registry's error code
// when the body has one, e.g. "UNAVAILABLE"), keeping err for errors.As.
func withStatus(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode == 0 {
		return err
	}
	code := strconv.Itoa(te.StatusCode)
	if strings.Contains(err.Error(), code) {
		return err
	}
	return &statusError{err: err, status: code + " " + http.StatusText(te.StatusCode)}
}

type statusError struct {
	err    error
	status string
}

func (e *statusError) Error() string { return e.err.Error() + " (HTTP " + e.status + ")" }
func (e *statusError) Unwrap() error { return e.err }

// MaxManifestSize bounds the manifests and indexes slipway reads (4 MiB,
// the limit of distribution and of the OCI distribution spec's minimum):
// go-containerregistry reads up to 100 MiB into memory.
const MaxManifestSize = 4 << 20

// manifestGuard checks manifest responses before go-containerregistry
// reads them: a body over MaxManifestSize is refused without being read,
// and one whose sha256 differs from the Docker-Content-Digest the registry
// sent with it is refused (go-containerregistry ignores that header when
// pulling by tag, so an altered response would go unnoticed).
type manifestGuard struct{ inner http.RoundTripper }

func (t *manifestGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > MaxManifestSize {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: manifest of %d bytes exceeds the %d-byte limit", req.URL.Redacted(), resp.ContentLength, MaxManifestSize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > MaxManifestSize {
		return nil, fmt.Errorf("GET %s: manifest exceeds the %d-byte limit", req.URL.Redacted(), MaxManifestSize)
	}
	claimed := resp.Header.Get("Docker-Content-Digest")
	mt := resp.Header.Get("Content-Type")
	if algo, hexSum, ok := strings.Cut(claimed, ":"); ok && algo == "sha256" && mt != string(types.DockerManifestSchema1Signed) {
		sum := sha256.Sum256(body)
		if got := hex.EncodeToString(sum[:]); got != hexSum {
			return nil, fmt.Errorf("GET %s: manifest digest mismatch: Docker-Content-Digest says %s, body is sha256:%s", req.URL.Redacted(), claimed, got)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}
