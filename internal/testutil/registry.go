// Package testutil starts the real components slipway's tests run against:
// Debian's docker-registry (distribution 2.8) on a free loopback port, with
// optional htpasswd auth and TLS from a throwaway CA.
package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is the distribution registry shipped by Debian's
// docker-registry package.
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a running docker-registry process.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// Root is the registry's storage directory.
	Root string
	// CA is the PEM of the CA that signed the TLS certificate, when TLS is on.
	CA []byte
	// CertPool trusts CA, when TLS is on.
	CertPool *x509.CertPool
	// User and Password are the htpasswd credentials, when auth is on.
	User, Password string

	cmd *exec.Cmd
	log *os.File
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	user, password string
	tls            bool
	// auth, when set, is the registry config's auth block (WithTokenAuth).
	auth string
}

// WithBasicAuth protects the registry with htpasswd auth for user/password.
func WithBasicAuth(user, password string) RegistryOption {
	return func(c *registryConfig) { c.user, c.password = user, password }
}

// WithTLS serves the registry over TLS with a certificate for 127.0.0.1
// signed by a fresh test CA.
func WithTLS() RegistryOption {
	return func(c *registryConfig) { c.tls = true }
}

// NeedRegistry skips the test when Debian's docker-registry is not installed
// (make installs it; go test ./... on a bare machine still runs the rest),
// or in the unit tier (SLIPWAY_UNIT set, as make test-unit does).
func NeedRegistry(t testing.TB) {
	t.Helper()
	if os.Getenv("SLIPWAY_UNIT") != "" {
		t.Skip("unit tier (make test-unit): no docker-registry")
	}
	if _, err := os.Stat(RegistryBinary); err != nil {
		if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s missing (run make deps)", RegistryBinary)
		}
		t.Skipf("%s not installed (run make deps)", RegistryBinary)
	}
}

// StartRegistry starts docker-registry with a temporary config and storage on
// a free 127.0.0.1 port and stops it when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	NeedRegistry(t)
	var c registryConfig
	for _, o := range opts {
		o(&c)
	}
	dir := t.TempDir()
	r := &Registry{Root: filepath.Join(dir, "storage"), User: c.user, Password: c.password}
	var extra strings.Builder
	if c.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(c.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&extra, "auth:\n  htpasswd:\n    realm: slipway-test\n    path: %s\n", hp)
	}
	if c.auth != "" {
		extra.Reset()
		extra.WriteString(c.auth)
	}
	var tlsBlock string
	if c.tls {
		ca, certPEM, keyPEM := NewTLSCert(t, "127.0.0.1")
		r.CA = ca
		r.CertPool = x509.NewCertPool()
		r.CertPool.AppendCertsFromPEM(ca)
		certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		tlsBlock = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certPath, keyPath)
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := FreePort(t)
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  relativeurls: true
  secret: slipway-test-secret
  debug:
    addr: ""
%s%s`, r.Root, r.Host, tlsBlock, extra.String())
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(RegistryBinary, "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting registry: %v", err)
		}
		r.cmd, r.log = cmd, logf
		if lastErr = r.waitReady(10 * time.Second); lastErr == nil {
			t.Cleanup(r.stop)
			return r
		}
		r.stop()
	}
	t.Fatalf("registry did not start: %v", lastErr)
	return nil
}

// URL is the registry's base URL (http:// or https://).
func (r *Registry) URL() string {
	if r.CA != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Client is an HTTP client that trusts the registry's CA.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CertPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CertPool}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Log returns what the registry wrote so far (for test failure messages).
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.log.Name())
	return string(b)
}

func (r *Registry) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	client := r.Client()
	client.Timeout = time.Second
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
	var err error
	for time.Now().Before(deadline) {
		select {
		case werr := <-exited:
			return fmt.Errorf("registry exited: %v: %s", werr, r.Log())
		default:
		}
		var resp *http.Response
		resp, err = client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				// Re-arm wait for stop().
				go func() { <-exited }()
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	go func() { <-exited }()
	return err
}

func (r *Registry) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
	}
	if r.log != nil {
		r.log.Close()
	}
}

// FreePort returns a currently unused TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
