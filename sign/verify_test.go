package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cattest "github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/cosign/v2/pkg/oci"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// TestSignWriteVerify is the whole flow against Debian's docker-registry:
// sign locally, push the image, write signatures and attestations, then
// verify with slipway and independently with cosign's library.
func TestSignWriteVerify(t *testing.T) {
	ctx := context.Background()
	repo := mustRepo(t, realRegistry(t)+"/team/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key, pub := testKey(t, "cosign"), testPub(t, "cosign")
	ann := map[string]string{"commit": strings.Repeat("c", 40), "target": "app"}
	sigs := signAndWrite(t, key, idx, repo,
		WithAnnotations(ann),
		WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte(testSPDX)}),
		WithVulnReport(testReport(t, idx, time.Now().Add(-time.Hour), scan.SeverityHigh)),
		WithProvenance(testProvenance()))

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(sigs.Subjects()), 1+len(im.Manifests); got != want {
		t.Fatalf("signed %d subjects, want %d (index and each platform)", got, want)
	}

	pol := Policy{
		Keys:                []*PublicKey{pub},
		RequireAttestations: []string{vocab.KindSBOM, vocab.KindVuln, vocab.KindProvenance},
		MaxSeverity:         scan.SeverityCritical,
		MaxScanAge:          24 * time.Hour,
		AllowedBaseDigests:  []v1.Hash{baseDigest},
	}
	v, err := Verify(ctx, repo.Tag("v1"), pol)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !v.Passed || v.Image != d.String() || v.Ref() != d {
		t.Fatalf("verdict = %+v, want passed for %s", v, d)
	}
	if len(v.Signatures) != 1 || v.Signatures[0].KeyID != pub.ID() {
		t.Errorf("signatures = %+v", v.Signatures)
	}
	kinds := map[string]bool{}
	for _, a := range v.Attestations {
		kinds[a.Kind] = a.KeyID == pub.ID()
	}
	for _, k := range []string{vocab.KindSBOM, vocab.KindVuln, vocab.KindProvenance} {
		if !kinds[k] {
			t.Errorf("attestation %s not reported as verified: %+v", k, v.Attestations)
		}
	}
	if _, err := json.Marshal(v); err != nil {
		t.Errorf("verdict does not marshal: %v", err)
	}

	// cosign's own verification accepts every signature slipway wrote: the
	// index and each platform manifest, with the signed annotations.
	wantAnn := map[string]any{}
	for k, v := range ann {
		wantAnn[k] = v
	}
	for _, s := range sigs.Subjects() {
		sd := repo.Digest(s.Digest.String())
		if err := cosignCheck(t, sd, pub, wantAnn); err != nil {
			t.Errorf("cosign.VerifyImageSignatures(%s): %v", sd, err)
		}
		if err := cosignCheck(t, sd, testPub(t, "other"), nil); err == nil {
			t.Errorf("cosign accepted %s with an unrelated key", sd)
		}
	}
	// ...and the attestations, the way `cosign verify-attestation` does.
	atts, _, err := cosign.VerifyImageAttestations(ctx, d, &cosign.CheckOpts{
		SigVerifier: pub.verifier, IgnoreTlog: true, IgnoreSCT: true,
		ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
	})
	if err != nil {
		t.Fatalf("cosign.VerifyImageAttestations: %v", err)
	}
	checkAttestations(t, atts, d)
}

// checkAttestations decodes each attestation and checks subject and content.
func checkAttestations(t *testing.T, atts []oci.Signature, d name.Digest) {
	t.Helper()
	seen := map[string]bool{}
	for _, a := range atts {
		p, err := a.Payload()
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeEnvelopeStatement(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Type != "https://in-toto.io/Statement/v1" {
			t.Errorf("statement type %q", st.Type)
		}
		if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != d.DigestStr() || st.Subject[0].Name != d.Context().Name() {
			t.Errorf("%s subject = %+v, want %s", st.PredicateType, st.Subject, d)
		}
		ann, _ := a.Annotations()
		if ann[predicateTypeAnnotation] != st.PredicateType {
			t.Errorf("predicateType annotation %q, statement %q", ann[predicateTypeAnnotation], st.PredicateType)
		}
		seen[st.PredicateType] = true
		checkCosignTypedDecode(t, p, st.PredicateType)
		switch st.PredicateType {
		case PredicateSPDX:
			var doc struct {
				SPDXVersion string `json:"spdxVersion"`
				Packages    []struct {
					Name        string `json:"name"`
					VersionInfo string `json:"versionInfo"`
				} `json:"packages"`
			}
			if err := json.Unmarshal(st.Predicate, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) != 1 || doc.Packages[0].Name != "golang.org/x/text" {
				t.Errorf("SPDX predicate = %+v", doc)
			}
		case PredicateVuln:
			var vp VulnPredicate
			if err := json.Unmarshal(st.Predicate, &vp); err != nil {
				t.Fatal(err)
			}
			a, err := readVulnPredicate(st.Predicate)
			if err != nil || len(a.vulns) != 2 || a.vulns[0].v.VulnerabilityID != "CVE-2024-24790" || vp.Slipway == nil || vp.Slipway.Subject != d.DigestStr() {
				t.Errorf("vuln result = %s (%v), slipway = %+v", vp.Scanner.Result, err, vp.Slipway)
			}
			if vp.Scanner.URI != "pkg:github/aquasecurity/trivy@0.74.0" || vp.Scanner.Version != "0.74.0" || !strings.HasPrefix(vp.Scanner.DB.Version, "v2 ") {
				t.Errorf("vuln scanner = %+v", vp.Scanner)
			}
			if vp.Metadata.ScanFinishedOn.IsZero() || !vp.Metadata.ScanStartedOn.Before(vp.Metadata.ScanFinishedOn) {
				t.Errorf("vuln metadata = %+v", vp.Metadata)
			}
		case PredicateProvenance:
			var p struct {
				BuildDefinition struct {
					BuildType            string         `json:"buildType"`
					ExternalParameters   map[string]any `json:"externalParameters"`
					InternalParameters   map[string]any `json:"internalParameters"`
					ResolvedDependencies []struct {
						Name   string            `json:"name"`
						URI    string            `json:"uri"`
						Digest map[string]string `json:"digest"`
					} `json:"resolvedDependencies"`
				} `json:"buildDefinition"`
				RunDetails struct {
					Builder  struct{ ID string } `json:"builder"`
					Metadata struct {
						InvocationID string    `json:"invocationId"`
						StartedOn    time.Time `json:"startedOn"`
					} `json:"metadata"`
				} `json:"runDetails"`
			}
			if err := json.Unmarshal(st.Predicate, &p); err != nil {
				t.Fatal(err)
			}
			bd := p.BuildDefinition
			want := testProvenance()
			if bd.BuildType != want.BuildType || bd.ExternalParameters["target"] != "./cmd/app" ||
				bd.InternalParameters["goVersion"] != "go1.26.8" || bd.InternalParameters["dirty"] != true ||
				bd.InternalParameters["ldflags"] != want.LDFlags {
				t.Errorf("build definition = %+v", bd)
			}
			deps := map[string]map[string]string{}
			for _, rd := range bd.ResolvedDependencies {
				deps[rd.Name] = rd.Digest
			}
			if deps[SourceDependency]["gitCommit"] != want.Source.Commit || deps[BaseImageDependency]["sha256"] != baseDigest.Hex {
				t.Errorf("resolved dependencies = %+v", bd.ResolvedDependencies)
			}
			if p.RunDetails.Builder.ID != want.BuilderID || p.RunDetails.Metadata.InvocationID != "run-1" || !p.RunDetails.Metadata.StartedOn.Equal(want.StartedOn) {
				t.Errorf("run details = %+v", p.RunDetails)
			}
		}
	}
	for _, pt := range []string{PredicateSPDX, PredicateVuln, PredicateProvenance} {
		if !seen[pt] {
			t.Errorf("no %s attestation", pt)
		}
	}
}

// TestResignIsIdempotent: signing and writing again with the same key adds
// no signature layer and replaces the attestations; another key's signature
// and attestation are kept.
func TestResignIsIdempotent(t *testing.T) {
	repo := mustRepo(t, realRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key := testKey(t, "cosign")
	opts := func(finished time.Time) []SignOption {
		return []SignOption{
			WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte(testSPDX)}),
			WithVulnReport(testReport(t, idx, finished, scan.SeverityLow)),
		}
	}
	counts := func() (sig, att int) {
		_, s := sigTagImage(t, d, "sig")
		_, a := sigTagImage(t, d, "att")
		return layerCount(t, s), layerCount(t, a)
	}
	signAndWrite(t, key, idx, repo, opts(time.Now().Add(-2*time.Hour))...)
	if s, a := counts(); s != 1 || a != 2 {
		t.Fatalf("after first signing: %d signature and %d attestation layers, want 1 and 2", s, a)
	}
	signAndWrite(t, key, idx, repo, opts(time.Now().Add(-time.Hour))...)
	if s, a := counts(); s != 1 || a != 2 {
		t.Fatalf("after re-signing: %d signature and %d attestation layers, want 1 and 2", s, a)
	}
	// The newer vuln attestation replaced the older one.
	v, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, MaxScanAge: 90 * time.Minute})
	if err != nil {
		t.Fatalf("Verify after re-signing: %v", err)
	}
	if len(v.Attestations) != 2 {
		t.Errorf("attestations = %+v", v.Attestations)
	}
	// Another key adds its own signature and attestation, and re-signing
	// with the first key removes neither.
	other := testKey(t, "other")
	signAndWrite(t, other, idx, repo, WithVulnReport(testReport(t, idx, time.Now(), scan.SeverityLow)))
	signAndWrite(t, key, idx, repo, opts(time.Now())...)
	if s, a := counts(); s != 2 || a != 3 {
		t.Fatalf("with two signers: %d signature and %d attestation layers, want 2 and 3", s, a)
	}
	// Each platform manifest carries exactly one signature per key too.
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		_, s := sigTagImage(t, repo.Digest(m.Digest.String()), "sig")
		if n := layerCount(t, s); n != 2 {
			t.Errorf("platform %s: %d signature layers, want 2", m.Platform, n)
		}
	}
}

// TestSecretsStayOut: a sentinel password never appears in errors or logs,
// whether loading succeeds or fails.
func TestSecretsStayOut(t *testing.T) {
	const sentinel = "S3ntinel-Pa55word-7f1c"
	const wrongSentinel = "Wr0ng-S3ntinel-9b2e"
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var errs []string

	priv, pub, err := GenerateKeyPair([]byte(sentinel))
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "cosign.key", priv)
	_, err = LoadPrivateKeyContext(context.Background(), path, staticPass(wrongSentinel))
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	errs = append(errs, err.Error())
	t.Setenv("SLIPWAY_SENTINEL_KEY", string(priv))
	_, err = LoadPrivateKeyContext(context.Background(), "env://SLIPWAY_SENTINEL_KEY", staticPass(wrongSentinel))
	errs = append(errs, err.Error())
	_, err = LoadPrivateKeyContext(context.Background(), path, func(bool) ([]byte, error) { return nil, errors.New("no terminal") })
	errs = append(errs, err.Error())

	key, err := LoadPrivateKeyContext(context.Background(), path, staticPass(sentinel))
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("loaded", slog.Any("key", key), slog.String("desc", key.String()))
	pk, err := ParsePublicKey(pub, "pub")
	if err != nil {
		t.Fatal(err)
	}
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	pushIndex(t, repo, "v1", idx)
	s, err := NewKeyed(key, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := s.Sign(context.Background(), idx, repo, WithVulnReport(testReport(t, idx, time.Now(), scan.SeverityCritical)))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRemote(context.Background(), repo, sigs, nil, http.DefaultTransport); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(context.Background(), repo.Tag("v1"), Policy{Keys: []*PublicKey{pk}, MaxSeverity: scan.SeverityHigh}, WithLogger(logger))
	if err == nil {
		t.Fatal("critical finding passed")
	}
	errs = append(errs, err.Error())
	if !strings.Contains(logs.String(), "verified image") || !strings.Contains(logs.String(), "signed image index") {
		t.Fatalf("expected log lines missing:\n%s", logs.String())
	}
	layout := t.TempDir()
	if err := WriteLayout(layout, sigs); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{sentinel, wrongSentinel} {
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("error contains a password: %s", e)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains a password:\n%s", logs.String())
		}
		if out, err := grepDir(layout, secret); err != nil || out {
			t.Errorf("layout contains a password (%v)", err)
		}
	}
}

// checkCosignTypedDecode decodes an attestation's statement into the typed
// structs `cosign verify-attestation --type spdxjson|cyclonedx|vuln|
// slsaprovenance1` decode it into (cosign pkg/policy.AttestationToPayloadJSON).
func checkCosignTypedDecode(t *testing.T, envelope []byte, predicateType string) {
	t.Helper()
	var env struct{ Payload string }
	if err := json.Unmarshal(envelope, &env); err != nil {
		t.Fatal(err)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	switch predicateType {
	case PredicateSPDX:
		var st in_toto.SPDXStatement
		if err := json.Unmarshal(body, &st); err != nil || st.Predicate == nil {
			t.Errorf("cosign SPDXStatement decode: %v", err)
		}
	case PredicateVuln:
		var st cattest.CosignVulnStatement
		if err := json.Unmarshal(body, &st); err != nil || st.Predicate.Metadata.ScanFinishedOn.IsZero() || st.Predicate.Scanner.Version == "" {
			t.Errorf("cosign CosignVulnStatement decode: %v (%+v)", err, st.Predicate.Metadata)
		}
	case PredicateProvenance:
		var st in_toto.ProvenanceStatementSLSA1
		if err := json.Unmarshal(body, &st); err != nil || st.Predicate.BuildDefinition.BuildType == "" ||
			st.Predicate.RunDetails.BuildMetadata.StartedOn == nil || len(st.Predicate.BuildDefinition.ResolvedDependencies) != 2 {
			t.Errorf("in-toto ProvenanceStatementSLSA1 decode: %v (%+v)", err, st.Predicate)
		}
	}
}
