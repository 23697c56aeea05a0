package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	cempty "github.com/sigstore/cosign/v2/pkg/oci/empty"
	cmutate "github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/scan"
)

// testPassword encrypts the keys in testdata/keys (see its README).
const testPassword = "slipway-test-password"

var (
	keyMu    sync.Mutex
	keyCache = map[string]*PrivateKey{}
)

// testKey loads testdata/keys/<name>.key once per test binary (scrypt is slow).
func testKey(t testing.TB, name string) *PrivateKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	k, err := LoadPrivateKeyContext(context.Background(), filepath.Join("..", "testdata", "keys", name+".key"), staticPass(testPassword))
	if err != nil {
		t.Fatalf("loading test key %s: %v", name, err)
	}
	keyCache[name] = k
	return k
}

func staticPass(p string) PassFunc {
	return func(bool) ([]byte, error) { return []byte(p), nil }
}

// testPub loads testdata/keys/<name>.pub.
func testPub(t testing.TB, name string) *PublicKey {
	t.Helper()
	keys, err := LoadPublicKeys(filepath.Join("..", "testdata", "keys", name+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

// baseDigest is the base image digest the test images record.
var baseDigest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ba", 32)}

// testIndex builds a two-platform index whose images record baseDigest in
// the org.opencontainers.image.base.digest annotation.
func testIndex(t testing.TB) v1.ImageIndex {
	t.Helper()
	idx := v1.ImageIndex(empty.Index)
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		img = mutate.Annotations(img, map[string]string{build.AnnotationBaseDigest: baseDigest.String()}).(v1.Image)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx
}

// pushIndex writes idx to repo:tag and returns its digest reference.
func pushIndex(t testing.TB, repo name.Repository, tag string, idx v1.ImageIndex) name.Digest {
	t.Helper()
	if err := remote.WriteIndex(repo.Tag(tag), idx); err != nil {
		t.Fatalf("pushing index: %v", err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(h.String())
}

// realRegistry starts Debian's docker-registry.
func realRegistry(t testing.TB) string {
	t.Helper()
	return testutil.StartRegistry(t).Host
}

// memRegistry starts go-containerregistry's in-memory registry (without
// the referrers API, its default).
func memRegistry(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// apiRegistry starts go-containerregistry's in-memory registry with the
// OCI 1.1 referrers API.
func apiRegistry(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func mustRepo(t testing.TB, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testReport is a scan report of idx finished at finished with one finding
// of severity sev.
func testReport(t testing.TB, idx v1.ImageIndex, finished time.Time, sev scan.Severity) *scan.Report {
	t.Helper()
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r := &scan.Report{
		Subject:    h.String(),
		Scanner:    scan.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB:         scan.DBInfo{SchemaVersion: 2, UpdatedAt: finished.Add(-6 * time.Hour)},
		StartedAt:  finished.Add(-10 * time.Second),
		FinishedAt: finished,
		Platforms:  []string{"linux/amd64", "linux/arm64"},
		Findings: []scan.Finding{{
			ID: "CVE-2024-24790", Severity: sev, PkgName: "stdlib", PkgType: "gobinary",
			InstalledVersion: "1.22.3", FixedVersion: "1.22.4", Platforms: []string{"linux/amd64", "linux/arm64"},
		}},
	}
	r.TrivyReport = trivyReportOf(t, r.Subject, r.Platforms, r.Findings)
	return r
}

// testSPDX is a minimal SPDX 2.3 document naming one Go module.
const testSPDX = `{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT",` +
	`"name":"slipway-test","documentNamespace":"https://slipway.dev/spdx/test",` +
	`"creationInfo":{"created":"2026-01-02T03:04:05Z","creators":["Tool: slipway"]},` +
	`"packages":[{"SPDXID":"SPDXRef-golang.org-x-text","name":"golang.org/x/text","versionInfo":"v0.41.0",` +
	`"downloadLocation":"NOASSERTION","externalRefs":[{"referenceCategory":"PACKAGE-MANAGER",` +
	`"referenceType":"purl","referenceLocator":"pkg:golang/golang.org/x/text@v0.41.0"}]}]}`

// testProvenance is a provenance input naming baseDigest.
func testProvenance() Provenance {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Provenance{
		BuilderID:          "https://github.com/slipway-build/slipway@v0.1.0",
		BuildType:          "https://slipway.dev/build/go@v1",
		ExternalParameters: map[string]any{"target": "./cmd/app", "platforms": []string{"linux/amd64", "linux/arm64"}},
		Source:             &Source{URI: "git+https://example.com/app", Commit: strings.Repeat("c", 40), Dirty: true},
		BaseImages:         []BaseImage{{Ref: "cgr.dev/chainguard/static:latest", Digest: baseDigest}},
		GoVersion:          "go1.26.8",
		LDFlags:            "-s -w -X main.version=1.0.0",
		Timings:            map[string]time.Duration{"build": 1500 * time.Millisecond},
		InvocationID:       "run-1",
		StartedOn:          start,
		FinishedOn:         start.Add(time.Minute),
	}
}

// signAndWrite signs idx with key for repo in cosign v2's legacy format
// (the tests that tamper with .sig/.att tags use it) and writes the result.
func signAndWrite(t testing.TB, key *PrivateKey, idx v1.ImageIndex, repo name.Repository, opts ...SignOption) *Signatures {
	t.Helper()
	s, err := NewSigner(SignerConfig{Key: key, Format: FormatLegacy})
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := s.Sign(context.Background(), idx, repo, opts...)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := WriteRemote(context.Background(), repo, sigs, nil, http.DefaultTransport); err != nil {
		t.Fatalf("WriteRemote: %v", err)
	}
	return sigs
}

// sigTagImage reads the signature (suffix "sig") or attestation ("att")
// image of d.
func sigTagImage(t testing.TB, d name.Digest, suffix string) (name.Tag, v1.Image) {
	t.Helper()
	tag := d.Context().Tag(fmt.Sprintf("%s.%s", strings.Replace(d.DigestStr(), ":", "-", 1), suffix))
	img, err := remote.Image(tag)
	if err != nil {
		t.Fatalf("reading %s: %v", tag, err)
	}
	return tag, img
}

func layerCount(t testing.TB, img v1.Image) int {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// rewriteSignature replaces the signature image of d with one layer made by
// edit from the first existing signature's payload and base64 signature.
func rewriteSignature(t testing.TB, d name.Digest, edit func(payload []byte, b64 string) ([]byte, string)) {
	t.Helper()
	tag, _ := sigTagImage(t, d, "sig")
	sigs, err := ociremote.Signatures(tag)
	if err != nil {
		t.Fatal(err)
	}
	list, err := sigs.Get()
	if err != nil || len(list) == 0 {
		t.Fatalf("reading signatures: %v (%d)", err, len(list))
	}
	p, err := list[0].Payload()
	if err != nil {
		t.Fatal(err)
	}
	b64, err := list[0].Base64Signature()
	if err != nil {
		t.Fatal(err)
	}
	p, b64 = edit(bytes.Clone(p), b64)
	sig, err := static.NewSignature(p, b64)
	if err != nil {
		t.Fatal(err)
	}
	writeSigImage(t, tag, sig)
}

// writeSigImage writes an image of the given signature layers to tag.
func writeSigImage(t testing.TB, tag name.Tag, sigs ...oci.Signature) {
	t.Helper()
	img, err := cmutate.AppendSignatures(cempty.Signatures(), false, sigs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("writing %s: %v", tag, err)
	}
}

func flipB64(t testing.TB, b64 string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x01
	return base64.StdEncoding.EncodeToString(raw)
}

// cosignCheck verifies d's signatures with cosign's own library code.
func cosignCheck(t testing.TB, d name.Digest, pub *PublicKey, ann map[string]any) error {
	t.Helper()
	_, _, err := cosign.VerifyImageSignatures(context.Background(), d, &cosign.CheckOpts{
		SigVerifier:   pub.verifier,
		IgnoreTlog:    true,
		IgnoreSCT:     true,
		ClaimVerifier: cosign.SimpleClaimVerifier,
		Annotations:   ann,
	})
	return err
}

// failingProxy is a reverse proxy to host that answers 500 to requests
// whose path contains fail.
func failingProxy(t testing.TB, host, fail string) string {
	t.Helper()
	u, err := url.Parse("http://" + host)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, fail) {
			http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}`, http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// writeFile writes b to a file in a temp dir and returns its path.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
