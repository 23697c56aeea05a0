package sigstack

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/slipway-build/slipway/internal/testutil"
)

// Stack is a running local Sigstore stack, stopped when the test ends. It
// has no transparency log (Rekor needs Trillian and MySQL).
type Stack struct {
	// IssuerURL is the OIDC issuer's URL, the iss of its tokens.
	IssuerURL string
	// FulcioURL is Fulcio's HTTP base URL.
	FulcioURL string
	// TSAURL is the timestamp authority's RFC 3161 endpoint
	// (.../api/v1/timestamp).
	TSAURL string
	// TrustedRootPath is a trusted_root.json (media type
	// application/vnd.dev.sigstore.trustedroot+json;version=0.1) holding
	// Fulcio's root as certificate authority and the TSA's chain as
	// timestamp authority; no transparency or CT logs.
	TrustedRootPath string
	// SigningConfigPath is a signing config (v0.2, as cosign v3's
	// --signing-config takes) naming Fulcio, the TSA and the issuer, and no
	// Rekor.
	SigningConfigPath string
	// FulcioRoot and TSARoot are the roots of the two chains.
	FulcioRoot, TSARoot *x509.Certificate

	issuer *issuer
}

// startTimeout bounds how long Fulcio and the TSA may take to answer.
const startTimeout = 60 * time.Second

// Start starts the stack on free 127.0.0.1 ports. It needs the fulcio and
// timestamp-server peers (testutil.Peer: skipped when missing, unless
// SLIPWAY_REQUIRE_TOOLS) and a loopback-only network namespace
// (testutil.IsolateNetwork in the package's TestMain).
func Start(t testing.TB) *Stack {
	t.Helper()
	fulcioBin := testutil.Peer(t, "fulcio")
	tsaBin := testutil.Peer(t, "timestamp-server")
	testutil.RequireIsolated(t)
	dir := t.TempDir()

	is := newIssuer(t)
	s := &Stack{IssuerURL: is.url(), issuer: is}

	// Fulcio, with an ephemeral CA, no CT log, trusting the issuer.
	cfg, err := json.Marshal(map[string]any{"OIDCIssuers": map[string]any{
		s.IssuerURL: map[string]string{"IssuerURL": s.IssuerURL, "ClientID": Audience, "Type": "email"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fulcio.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	s.FulcioURL = "http://127.0.0.1:" + strconv.Itoa(port)
	fulcio := startTestPeer(t, dir, "fulcio", fulcioBin, "serve", "--ca", "ephemeralca", "--ct-log-url", "",
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--grpc-host", "127.0.0.1", "--grpc-port", strconv.Itoa(testutil.FreePort(t)),
		"--metrics-port", strconv.Itoa(testutil.FreePort(t)),
		"--legacy-unix-domain-socket", filepath.Join(dir, "fulcio-legacy.sock"),
		"--config-path", cfgPath)

	// The timestamp authority, with an in-memory signer.
	tsaBase, tsaChain := acquireTSA(t, tsaBin)
	s.TSAURL = tsaBase + "/api/v1/timestamp"

	fulcioChain, err := waitChain(fulcio, s.FulcioURL+"/api/v1/rootCert")
	if err != nil {
		t.Fatal(err)
	}
	s.FulcioRoot, s.TSARoot = fulcioChain[len(fulcioChain)-1], tsaChain[len(tsaChain)-1]

	s.TrustedRootPath = filepath.Join(dir, "trusted_root.json")
	if err := writeTrustedRoot(s.TrustedRootPath, s.FulcioURL, fulcioChain, s.TSAURL, tsaChain); err != nil {
		t.Fatal(err)
	}
	s.SigningConfigPath = filepath.Join(dir, "signing_config.json")
	if err := writeSigningConfig(s.SigningConfigPath, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Token returns an identity token of the issuer for email: RS256, aud
// sigstore, email_verified true, valid for TokenLifetime.
func (s *Stack) Token(t testing.TB, email string) string {
	t.Helper()
	return s.SignToken(t, s.Claims(email))
}

// Claims returns the claims Token signs for email, for tests that alter
// them (another audience, an expired token) and sign them with SignToken.
func (s *Stack) Claims(email string) map[string]any { return s.issuer.claims(email) }

// SignToken signs claims with the issuer's key, as a compact RS256 JWT.
func (s *Stack) SignToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	jwt, err := s.issuer.sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return jwt
}

// GitHubActionsEnv returns the environment GitHub Actions gives a job that
// may request identity tokens: with it, GET
// $ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore with
// "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" answers
// {"value": "<a token for email>"}. A wrong bearer or another audience is
// refused.
func (s *Stack) GitHubActionsEnv(email string) map[string]string {
	return map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   s.IssuerURL + "/actions/token?email=" + url.QueryEscape(email),
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": s.issuer.actionsToken,
	}
}

// peer is a started peer process.
type peer struct {
	name, log string
	cmd       *exec.Cmd
	logFile   *os.File
	// exited is closed when the process has exited.
	exited chan struct{}
}

// startPeer starts bin with args in dir, its output in dir/name.log.
func startPeer(dir, name, bin string, args ...string) (*peer, error) {
	p := &peer{name: name, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	var err error
	if p.logFile, err = os.Create(p.log); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop kills the process and waits for it.
func (p *peer) stop() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.logFile.Close()
}

// startTestPeer starts a peer that lives as long as the test, and shows
// its log when the test fails.
func startTestPeer(t testing.TB, dir, name, bin string, args ...string) *peer {
	t.Helper()
	p, err := startPeer(dir, name, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			showLog(t, p.name, p.log)
		}
	})
	return p
}

// The timestamp server always serves its metrics on :2112 and exits when
// that port is taken, so the stacks of one test process (one network
// namespace) share one timestamp server, stopped when the last ends.
var sharedTSA struct {
	sync.Mutex
	users int
	p     *peer
	dir   string
	base  string
	chain []*x509.Certificate
}

// acquireTSA returns the base URL and chain of the shared timestamp
// server, started if none runs; it is released when the test ends.
func acquireTSA(t testing.TB, bin string) (string, []*x509.Certificate) {
	t.Helper()
	ts := &sharedTSA
	ts.Lock()
	defer ts.Unlock()
	if ts.users == 0 {
		dir, err := os.MkdirTemp("", "sigstack-tsa-")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(testutil.FreePort(t))
		p, err := startPeer(dir, "timestamp-server", bin, "serve", "--host", "127.0.0.1", "--port", port,
			"--timestamp-signer", "memory", "--disable-ntp-monitoring")
		if err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		base := "http://127.0.0.1:" + port
		chain, err := waitChain(p, base+"/api/v1/timestamp/certchain")
		if err != nil {
			p.stop()
			showLog(t, p.name, p.log)
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		ts.p, ts.dir, ts.base, ts.chain = p, dir, base, chain
	}
	ts.users++
	p := ts.p
	t.Cleanup(func() {
		if t.Failed() {
			showLog(t, p.name, p.log)
		}
		ts.Lock()
		defer ts.Unlock()
		if ts.users--; ts.users == 0 {
			ts.p.stop()
			os.RemoveAll(ts.dir)
			ts.p, ts.chain = nil, nil
		}
	})
	return ts.base, ts.chain
}

func showLog(t testing.TB, name, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s log: %v", name, err)
		return
	}
	if len(data) > 16<<10 {
		data = append([]byte("…"), data[len(data)-16<<10:]...)
	}
	t.Logf("%s log (%s):\n%s", name, path, data)
}

// waitChain polls url until it answers 200 with a PEM certificate chain
// (leaf first, root last) and returns the chain.
func waitChain(p *peer, url string) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		chain, err := getChain(ctx, url)
		if err == nil {
			return chain, nil
		}
		last = err
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before answering %s: %w", p.name, url, last)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s did not answer %s within %v: %w", p.name, url, startTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func getChain(ctx context.Context, url string) ([]*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return parseChain(body)
}

// parseChain parses a PEM certificate chain.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return chain, nil
}

// writeTrustedRoot writes a trusted root with Fulcio's chain as certificate
// authority and the TSA's as timestamp authority, each valid from its
// root's NotBefore, and checks that sigstore-go reads it back.
func writeTrustedRoot(path, fulcioURL string, fulcio []*x509.Certificate, tsaURL string, tsa []*x509.Certificate) error {
	ca := &root.FulcioCertificateAuthority{
		Root:                fulcio[len(fulcio)-1],
		Intermediates:       fulcio[:len(fulcio)-1],
		ValidityPeriodStart: fulcio[len(fulcio)-1].NotBefore,
		URI:                 fulcioURL,
	}
	if len(tsa) < 2 {
		return fmt.Errorf("TSA chain has %d certificates, want a leaf and a root", len(tsa))
	}
	ta := &root.SigstoreTimestampingAuthority{
		Leaf:                tsa[0],
		Intermediates:       tsa[1 : len(tsa)-1],
		Root:                tsa[len(tsa)-1],
		ValidityPeriodStart: tsa[len(tsa)-1].NotBefore,
		URI:                 tsaURL,
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca}, nil, []root.TimestampingAuthority{ta}, nil)
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding trusted root: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	back, err := root.NewTrustedRootFromPath(path)
	if err != nil {
		return fmt.Errorf("sigstore-go refuses the trusted root: %w", err)
	}
	if n, m := len(back.FulcioCertificateAuthorities()), len(back.TimestampingAuthorities()); n != 1 || m != 1 {
		return fmt.Errorf("trusted root read back with %d CAs and %d TSAs, want 1 and 1", n, m)
	}
	return nil
}

// writeSigningConfig writes a signing config v0.2 naming the stack's
// Fulcio, TSA and issuer, and no Rekor.
func writeSigningConfig(path string, s *Stack) error {
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	svc := func(u string) []root.Service {
		return []root.Service{{URL: u, MajorAPIVersion: 1, ValidityPeriodStart: start, Operator: "slipway-test"}}
	}
	sc, err := root.NewSigningConfig(root.SigningConfigMediaType02,
		svc(s.FulcioURL), svc(s.IssuerURL),
		nil, root.ServiceConfiguration{},
		svc(s.TSAURL), root.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY})
	if err != nil {
		return fmt.Errorf("signing config: %w", err)
	}
	data, err := sc.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding signing config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	if _, err := root.NewSigningConfigFromPath(path); err != nil {
		return fmt.Errorf("sigstore-go refuses the signing config: %w", err)
	}
	return nil
}
