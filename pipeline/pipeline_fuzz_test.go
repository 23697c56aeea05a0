package pipeline

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/build"
)

func FuzzDecodePolicyFile(f *testing.F) {
	for _, s := range []string{
		"",
		"keys: [cosign.pub]\nthreshold: 2\n",
		"keys: [env://KEY]\nrequire_attestations: [sbom, vuln]\nmax_severity: HIGH\nmax_scan_age: 24h\n",
		"allowed_base_digests:\n  - sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
		"{keys: [a], threshold: 1}",
		"---\nkeys: [a]\n",
		"keys: a\n",
		"threshold: many\n",
		"max_scan_age: forever\n",
		"kyes: [a]\n",
		"keys:\n\t- a\n",
		"- a\n- b\n",
		"keys: &k [a]\nrequire_attestations: *k\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePolicyFile("policy.yaml", data)
		if err == nil {
			if p == nil {
				t.Fatal("nil policy and nil error")
			}
			return
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("error is not a *ConfigError: %T %v", err, err)
		}
		if ce.File != "policy.yaml" {
			t.Fatalf("error names file %q: %v", ce.File, err)
		}
		// A line number, when given, is a line of the file (YAML breaks
		// lines at \n, \r\n and a lone \r).
		norm := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
		if lines := strings.Count(norm, "\n") + 1; ce.Line < 0 || ce.Line > lines {
			t.Fatalf("error names line %d of a %d-line file: %v", ce.Line, lines, err)
		}
	})
}

// TestDecodePolicyFileErrors checks the positions the policy-file errors
// name (the file is decoded as is, not wrapped into a config).
func TestDecodePolicyFileErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"keys: [a]\nkyes: [b]\n", "p.yaml:2: policy.kyes: unknown key"},
		{"keys: [a]\nthreshold: many\n", "p.yaml:2: threshold: wrong type"},
		{"keys: [a\n", "p.yaml"},
	} {
		_, err := DecodePolicyFile("p.yaml", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want prefix %q", tc.in, err, tc.want)
		}
	}
	p, err := DecodePolicyFile("p.yaml", []byte("---\nkeys: [a, b]\nthreshold: 2\nmax_scan_age: 1h\n"))
	if err != nil || len(p.Keys) != 2 || p.Threshold != 2 || p.MaxScanAge.String() != "1h0m0s" {
		t.Fatalf("policy = %+v, err = %v", p, err)
	}
}

// refusingTransport fails every request without touching the network and
// records the hosts asked for.
type refusingTransport struct {
	mu    sync.Mutex
	hosts []string
}

func (r *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.hosts = append(r.hosts, req.URL.Host)
	r.mu.Unlock()
	return nil, errors.New("fuzz: no network")
}

// FuzzBaseReference feeds base image references through the validation a
// config gets (checkBase) and through build.ResolveBase, with a transport
// that refuses every request. Properties: nothing panics; a reference the
// config validation rejects is never requested; one it accepts is parsed
// the same way at resolve time (the request goes out, to the registry the
// reference names and no other host). oci: specs are resolved inside a
// one-image layout in a temp dir.
func FuzzBaseReference(f *testing.F) {
	layoutDir := f.TempDir()
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		f.Fatal(err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64"})
	if err != nil {
		f.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		f.Fatal(err)
	}
	dig, _ := img.Digest()
	for _, s := range []string{
		"scratch", "alpine", "alpine:3.20", "docker.io/library/alpine:3.20", "gcr.io/distroless/static:nonroot",
		"127.0.0.1:5000/team/base@sha256:" + strings.Repeat("a", 64), "localhost/x:y",
		"ghcr.io/a/b:tag@" + dig.String(), "x@sha256:zz", "UPPER/case", "a//b", "host:99999999/x",
		"registry.example.com:443/a/b/c/d:" + strings.Repeat("t", 128), "-x", "a:b:c", "@sha256:",
		"oci:", "oci:.", "oci:.@" + dig.String(), "oci:.@sha256:bad", "oci:.@", "oci:nope", "oci:./../..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // Validate turns an empty base into scratch before checking it
		}
		checkErr := checkBase(s)
		in := s
		if rest, ok := strings.CutPrefix(s, build.LayoutPrefix); ok {
			in = build.LayoutPrefix + layoutDir + "/" + rest
		}
		tr := &refusingTransport{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b, resolveErr := build.ResolveBase(ctx, in, remote.WithTransport(tr), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
		if strings.HasPrefix(s, build.LayoutPrefix) || s == build.Scratch {
			if resolveErr == nil && b == nil {
				t.Fatal("nil base and nil error")
			}
			return
		}
		if resolveErr == nil {
			t.Fatalf("%q resolved through a transport that refuses everything", s)
		}
		if checkErr != nil {
			if len(tr.hosts) > 0 {
				t.Fatalf("%q was rejected by validation (%v) but requested from %v", s, checkErr, tr.hosts)
			}
			return
		}
		if len(tr.hosts) == 0 {
			t.Fatalf("%q passed validation but resolving it failed before any request: %v", s, resolveErr)
		}
		ref, err := name.ParseReference(s)
		if err != nil {
			t.Fatalf("%q passed validation but does not parse: %v", s, err)
		}
		// A registry with an empty port ("host:") is requested as "host".
		want := strings.TrimSuffix(ref.Context().RegistryStr(), ":")
		for _, h := range tr.hosts {
			if h != want && strings.TrimSuffix(h, ":443") != want && !(want == name.DefaultRegistry && h == "index.docker.io") {
				t.Fatalf("%q (registry %s) made a request to %s", s, want, h)
			}
		}
	})
}
