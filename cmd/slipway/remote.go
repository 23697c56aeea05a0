package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/pipeline"
)

// version is set with -ldflags "-X main.version=…" by make build.
var version = "devel"

func userAgent() string { return "slipway/" + version }

// remoteOptions are the go-containerregistry options for every registry
// call: credentials from Docker's config and credential helpers, a bounded
// number of parallel uploads, retries of transient errors, and extra CAs
// from SSL_CERT_FILE/SSL_CERT_DIR (Go's defaults) plus SLIPWAY_CA_FILE.
func remoteOptions(c *pipeline.Config, jobs int) ([]remote.Option, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := os.Getenv("SLIPWAY_CA_FILE"); f != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading SLIPWAY_CA_FILE: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("SLIPWAY_CA_FILE %s holds no PEM certificate", f)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if jobs < 1 {
		jobs = 4
	}
	return []remote.Option{
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(tr),
		remote.WithUserAgent(userAgent()),
		remote.WithJobs(jobs),
	}, nil
}

// insecureFunc reports whether plain HTTP is allowed for a host: loopback
// always (go-containerregistry's own rule), others only when listed.
func insecureFunc(c *pipeline.Config, extra []string) func(string) bool {
	allowed := map[string]bool{}
	for _, h := range append(append([]string(nil), c.InsecureRegistries...), extra...) {
		allowed[strings.TrimSpace(h)] = true
	}
	return func(host string) bool { return allowed[host] }
}
