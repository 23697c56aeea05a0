package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/sigstack"
)

// TestKeylessCertificateOutsideValidity: a bundle whose only trusted time
// (the TSA's) is before its Fulcio certificate's validity began is refused
// by slipway verify (and by cosign v3), although signature, certificate
// chain and identity are all right: the certificate is judged at the
// timestamped time, never at "now".
func TestKeylessCertificateOutsideValidity(t *testing.T) {
	cosign3 := testutil.Peer(t, "cosign-v3")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf("repository: %s/late\nplatforms: [linux/amd64]\ntargets:\n  - name: hello\n    dir: %s\n    main: ./cmd/hello\nscan: {enabled: false}\n",
		reg.Host, filepath.Join(repoRoot(), "testdata", "apps", "hello")))
	if r := slipway(t, dir, nil, "build", "--push", "--output-json", "results.json"); r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	ref, err := name.NewDigest(readResults(t, filepath.Join(dir, "results.json"))["hello"].Ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}

	// Sign and timestamp first, then (two seconds later) get the
	// certificate for the same key: the timestamp predates the certificate.
	ctx := context.Background()
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := json.Marshal(map[string]any{"_type": "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": desc.Digest.Hex}}},
		"predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, kp, sgsign.BundleOptions{
		Context: ctx, TimestampAuthorities: []*sgsign.TimestampAuthority{sgsign.NewTimestampAuthority(&sgsign.TimestampAuthorityOptions{URL: stack.TSAURL})}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	const email = "late@example.com"
	cert, err := sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: stack.FulcioURL}).GetCertificate(ctx, kp, &sgsign.CertificateProviderOptions{IDToken: stack.Token(t, email)})
	if err != nil {
		t.Fatal(err)
	}
	b.VerificationMaterial.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert}}
	raw, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	pushBundleReferrer(t, ref, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, raw)

	vdir := t.TempDir()
	id := []string{"--certificate-identity", email, "--certificate-oidc-issuer", stack.IssuerURL, "--trusted-root", stack.TrustedRootPath}
	v := slipway(t, vdir, nil, append([]string{"verify", ref.String(), "--output", "json"}, id...)...)
	t.Logf("verdict: %s", v.stdout)
	if v.code != 3 || !bytes.Contains([]byte(v.stdout), []byte("certificate")) {
		t.Fatalf("slipway verify of a certificate used before its validity: %s, want exit 3 naming the certificate", v)
	}
	denyPeer(t, vdir, cosign3, nil, "verify", "--certificate-identity", email, "--certificate-oidc-issuer", stack.IssuerURL,
		"--trusted-root", stack.TrustedRootPath, "--use-signed-timestamps", "--insecure-ignore-tlog", "--insecure-ignore-sct", ref.String())
}

// pushBundleReferrer stores a bundle as cosign v3 does: an OCI 1.1
// referrer of subject (ggcr updates the referrers tag).
func pushBundleReferrer(t *testing.T, ref name.Digest, subject v1.Descriptor, bundle []byte) {
	t.Helper()
	const bundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	layer := static.NewLayer(bundle, bundleType)
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{layer, cfg} {
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	ld, _ := layer.Digest()
	cd, _ := cfg.Digest()
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: bundleType,
		Config:      v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2},
		Layers:      []v1.Descriptor{{MediaType: bundleType, Digest: ld, Size: int64(len(bundle))}},
		Subject:     &subject,
		Annotations: map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(mb))
	if err := remote.Put(ref.Context().Digest(h.String()), rawManifest{b: mb, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}
