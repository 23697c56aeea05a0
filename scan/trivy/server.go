package trivy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/rpc"
	"github.com/aquasecurity/trivy/pkg/types"
	xstrings "github.com/aquasecurity/trivy/pkg/x/strings"
	rpcCache "github.com/aquasecurity/trivy/rpc/cache"
	rpcScanner "github.com/aquasecurity/trivy/rpc/scanner"
)

// DefaultServerTimeout bounds each request to a Trivy server (the DB
// version, cache uploads, the Scan RPC) when ServerConfig.Timeout is zero.
const DefaultServerTimeout = 2 * time.Minute

// DefaultTokenHeader is the header carrying the token, as Trivy's
// --token-header defaults to.
const DefaultTokenHeader = "Trivy-Token"

// maxVersionBytes bounds the server's /version answer.
const maxVersionBytes = 1 << 20

// ServerConfig configures scanning through a Trivy server (`trivy server`,
// Trivy's client/server protocol): slipway analyses the layers itself, as
// in local mode, uploads the analysis to the server's cache and has the
// server detect vulnerabilities with its DB.
type ServerConfig struct {
	// URL is the server's base URL (http:// or https://).
	URL string
	// Token is sent in TokenHeader on every request when set. It is a
	// secret: never logged, never in an error or a report.
	Token string
	// TokenHeader names the token's header (default DefaultTokenHeader).
	TokenHeader string
	// Headers are sent on every request (as Trivy's --custom-headers).
	Headers map[string]string
	// Timeout bounds each request (default DefaultServerTimeout).
	Timeout time.Duration
}

// WithServer makes scans detect vulnerabilities on a Trivy server instead
// of with a local DB: the DB checks (schema, max age, clock skew) apply to
// the server's DB, read from its /version endpoint. Default: local mode.
func WithServer(c ServerConfig) Option {
	return func(o *options) error {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("trivy server URL %q: want http(s)://host[:port][/prefix]", redactURL(c.URL))
		}
		if u.User != nil {
			return fmt.Errorf("trivy server URL %q: credentials belong in the token, not the URL", redactURL(c.URL))
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("trivy server URL %q: no query or fragment (headers carry what the server needs)", redactURL(c.URL))
		}
		if c.Timeout < 0 {
			return fmt.Errorf("negative trivy server timeout %s", c.Timeout)
		}
		if c.TokenHeader == "" {
			c.TokenHeader = DefaultTokenHeader
		}
		for k := range c.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				return fmt.Errorf("trivy server header name %q is invalid", k)
			}
		}
		if strings.ContainsAny(c.Token, "\r\n") {
			return errors.New("trivy server token holds a line break")
		}
		o.server = &c
		return nil
	}
}

// redactURL drops credentials from a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// remoteServer talks Trivy's client/server protocol (Twirp) to one server.
type remoteServer struct {
	base    *url.URL
	shown   string // base URL without credentials, for messages
	http    *http.Client
	cache   rpcCache.Cache
	scanner rpcScanner.Scanner
}

func newRemoteServer(c ServerConfig) *remoteServer {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultServerTimeout
	}
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	if c.Token != "" {
		h.Set(c.TokenHeader, c.Token)
	}
	hc := &http.Client{
		Timeout:   timeout,
		Transport: headerTransport{headers: h, base: http.DefaultTransport},
		// The token goes to the configured server only: a redirect fails.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the trivy server answered with a redirect (refused: the token would follow it)")
		},
	}
	u, _ := url.Parse(c.URL) // checked by WithServer
	base := strings.TrimSuffix(u.String(), "/")
	return &remoteServer{
		base:    u,
		shown:   redactURL(c.URL),
		http:    hc,
		cache:   rpcCache.NewCacheProtobufClient(base, hc),
		scanner: rpcScanner.NewScannerProtobufClient(base, hc),
	}
}

// headerTransport adds the configured headers to every request.
type headerTransport struct {
	headers http.Header
	base    http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header[k] = v
	}
	return t.base.RoundTrip(r)
}

// ServerError is a failure to scan through a Trivy server: unreachable,
// timed out, refusing the token, or answering something that is not a
// consistent answer. The scan fails; it never passes on one.
type ServerError struct {
	// URL is the server's URL, without credentials.
	URL string
	Op  string
	Err error
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("trivy server %s: %s: %v", e.URL, e.Op, e.Err)
}

func (e *ServerError) Unwrap() error { return e.Err }

func (r *remoteServer) fail(op string, err error) error {
	return &ServerError{URL: r.shown, Op: op, Err: err}
}

// dbStatus reads the server's DB metadata from its /version endpoint
// (types.VersionInfo, what `trivy version --server` shows) and checks it
// as a local DB's metadata: present, this scanner's schema, an UpdatedAt.
func (r *remoteServer) dbStatus(ctx context.Context, now time.Time) (DBStatus, error) {
	st := DBStatus{Dir: r.shown}
	u := r.base.JoinPath("version")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return st, r.fail("reading the DB version", err)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return st, r.fail("reading the DB version", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, r.fail("reading the DB version", fmt.Errorf("HTTP status %d", resp.StatusCode))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxVersionBytes+1))
	if err != nil {
		return st, r.fail("reading the DB version", err)
	}
	if len(b) > maxVersionBytes {
		return st, r.fail("reading the DB version", fmt.Errorf("answer over %d bytes", maxVersionBytes))
	}
	var vi types.VersionInfo
	if err := json.Unmarshal(b, &vi); err != nil {
		return st, r.fail("reading the DB version", fmt.Errorf("decoding the answer: %w", err))
	}
	m := vi.VulnerabilityDB
	if m == nil {
		return st, &DBError{Problem: DBMissing, Dir: r.shown, Err: errors.New("the server reports no vulnerability DB")}
	}
	st.SchemaVersion, st.UpdatedAt, st.NextUpdate, st.DownloadedAt = m.Version, m.UpdatedAt, m.NextUpdate, m.DownloadedAt
	if m.Version != db.SchemaVersion {
		return st, &DBError{Problem: DBSchema, Dir: r.shown, SchemaVersion: m.Version, Want: db.SchemaVersion}
	}
	if m.UpdatedAt.IsZero() {
		return st, &DBError{Problem: DBInvalid, Dir: r.shown, Err: errors.New("the server's DB metadata has no UpdatedAt")}
	}
	st.Age = now.Sub(m.UpdatedAt)
	return st, nil
}

// upload puts what the server's cache lacks of an inspected image into it,
// from the scanner's cache (entries checked against their layers).
func (r *remoteServer) upload(ctx context.Context, local cache.Cache, ref inspected) error {
	res, err := r.cache.MissingBlobs(ctx, rpc.ConvertToMissingBlobsRequest(ref.imageKey, ref.layerKeys))
	if err != nil {
		return r.fail("asking for missing cache entries", err)
	}
	if res == nil {
		return r.fail("asking for missing cache entries", errors.New("empty answer"))
	}
	for _, k := range res.MissingBlobIds {
		if !slices.Contains(ref.layerKeys, k) {
			return r.fail("asking for missing cache entries", fmt.Errorf("the answer names a layer key %q that was not asked about", k))
		}
		info, err := local.GetBlob(ctx, k)
		if err != nil {
			return fmt.Errorf("reading the analysis of layer %s: %w", k, err)
		}
		if _, err := r.cache.PutBlob(ctx, rpc.ConvertToRPCPutBlobRequest(k, info)); err != nil {
			return r.fail("uploading a layer analysis", err)
		}
	}
	if res.MissingArtifact {
		info, err := local.GetArtifact(ctx, ref.imageKey)
		if err != nil {
			return fmt.Errorf("reading the image analysis: %w", err)
		}
		if _, err := r.cache.PutArtifact(ctx, rpc.ConvertToRPCArtifactInfo(ref.imageKey, info)); err != nil {
			return r.fail("uploading the image analysis", err)
		}
	}
	return nil
}

// scan has the server detect vulnerabilities in the inspected image. want
// is what slipway found itself in the same merged layers (every result's
// target and packages, no vulnerabilities): the server's answer must list
// exactly those targets and packages, and its vulnerabilities must be in
// them, or it is not an answer about this image.
func (r *remoteServer) scan(ctx context.Context, target string, ref inspected, osFound ftypes.OS, want types.Results, opts types.ScanOptions) (types.Results, error) {
	res, err := r.scanner.Scan(ctx, &rpcScanner.ScanRequest{
		Target:     target,
		ArtifactId: ref.imageKey,
		BlobIds:    ref.layerKeys,
		Options: &rpcScanner.ScanOptions{
			PkgTypes:            opts.PkgTypes,
			PkgRelationships:    xstrings.ToStringSlice(opts.PkgRelationships),
			Scanners:            xstrings.ToStringSlice(opts.Scanners),
			VulnSeveritySources: xstrings.ToStringSlice(opts.VulnSeveritySources),
		},
	})
	if err != nil {
		return nil, r.fail("scanning", err)
	}
	if res == nil {
		return nil, r.fail("scanning", errors.New("empty answer"))
	}
	got := rpc.ConvertFromRPCResults(res.Results)
	if err := consistent(osFound, rpc.ConvertFromRPCOS(res.Os), want, got); err != nil {
		return nil, r.fail("scanning", fmt.Errorf("inconsistent answer: %w", err))
	}
	return got, nil
}

// consistent checks a server's answer against what slipway saw itself.
func consistent(osFound, osGot ftypes.OS, want, got types.Results) error {
	if osFound.Detected() && (osGot.Family != osFound.Family || osGot.Name != osFound.Name) {
		return fmt.Errorf("OS %q, but the image's is %q", osGot.String(), osFound.String())
	}
	type pkgKey struct{ name, version, path string }
	pkgs := func(r types.Result) []pkgKey {
		var out []pkgKey
		for _, p := range r.Packages {
			out = append(out, pkgKey{p.Name, p.Version, p.FilePath})
		}
		slices.SortFunc(out, func(a, b pkgKey) int {
			return strings.Compare(a.name+"\x00"+a.version+"\x00"+a.path, b.name+"\x00"+b.version+"\x00"+b.path)
		})
		return out
	}
	byTarget := map[string]types.Result{}
	for _, w := range want {
		byTarget[w.Target] = w
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d results, want %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := byTarget[g.Target]
		if !ok {
			return fmt.Errorf("result for %q, which the image does not have", g.Target)
		}
		delete(byTarget, g.Target)
		if g.Class != w.Class || g.Type != w.Type {
			return fmt.Errorf("result %q is %s/%s, want %s/%s", g.Target, g.Class, g.Type, w.Class, w.Type)
		}
		if !slices.Equal(pkgs(g), pkgs(w)) {
			return fmt.Errorf("result %q lists other packages than the image has", g.Target)
		}
		for _, v := range g.Vulnerabilities {
			if v.VulnerabilityID == "" {
				return fmt.Errorf("result %q has a vulnerability without an id", g.Target)
			}
			if !slices.ContainsFunc(g.Packages, func(p ftypes.Package) bool {
				return p.Name == v.PkgName && p.Version == installedVersionOf(p, v)
			}) {
				return fmt.Errorf("result %q: %s names package %s %s, which it does not list", g.Target, v.VulnerabilityID, v.PkgName, v.InstalledVersion)
			}
		}
	}
	return nil
}

// installedVersionOf is p's version as a finding on it states it: OS
// packages' findings carry epoch and release ("1:2.36-9"), so p matches
// when the finding's InstalledVersion is one of p's spellings.
func installedVersionOf(p ftypes.Package, v types.DetectedVulnerability) string {
	if v.InstalledVersion == p.Version {
		return p.Version
	}
	full := p.Version
	if p.Release != "" {
		full += "-" + p.Release
	}
	if p.Epoch != 0 {
		full = fmt.Sprintf("%d:%s", p.Epoch, full)
	}
	if v.InstalledVersion == full {
		return p.Version
	}
	return ""
}
