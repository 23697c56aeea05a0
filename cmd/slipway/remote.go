package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
)

// version is set with -ldflags "-X main.version=…" by make build.
var version = "devel"

func userAgent() string { return "slipway/" + version }

// newRegistry is a command's registry publisher, made once per command
// and handed to every stage that reaches a registry (as crane's root
// command makes its options once for all its subcommands): credentials
// from Docker's config and credential helpers, a bounded number of
// parallel uploads, and extra CAs from SSL_CERT_FILE/SSL_CERT_DIR (Go's
// defaults) plus SLIPWAY_CA_FILE. Its RemoteOptions serve the command's
// reads (bases, images to scan or verify) too.
func newRegistry(lc *loadedConfig, extra ...publish.Option) (*publish.Registry, error) {
	tr, err := transport()
	if err != nil {
		return nil, err
	}
	jobs := lc.Jobs
	if jobs < 1 {
		jobs = 4
	}
	return publish.NewRegistry(append([]publish.Option{
		publish.WithKeychain(authn.DefaultKeychain),
		publish.WithTransport(tr),
		publish.WithRemoteOptions(remote.WithUserAgent(userAgent()), remote.WithJobs(jobs)),
	}, extra...)...)
}

// readOptions are the remote options of a command that only reads (scan,
// sign, verify, db pull), from its one registry.
func readOptions(lc *loadedConfig) ([]remote.Option, error) {
	r, err := newRegistry(lc)
	if err != nil {
		return nil, err
	}
	return r.RemoteOptions(context.Background()), nil
}

// transport is the HTTP transport for registries.
func transport() (http.RoundTripper, error) {
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
	return tr, nil
}

// insecureFunc reports whether a host is listed as reachable over plain
// HTTP (insecure_registries, --insecure-registry). Loopback registries need
// no entry: go-containerregistry falls back to HTTP for them by itself.
func insecureFunc(c *pipeline.Config, extra []string) func(string) bool {
	allowed := map[string]bool{}
	for _, h := range append(append([]string(nil), c.InsecureRegistries...), extra...) {
		allowed[strings.TrimSpace(h)] = true
	}
	return func(host string) bool { return allowed[host] }
}
