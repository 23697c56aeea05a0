package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cattest "github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"

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
			r := vp.Scanner.Result
			if r == nil || len(r.Findings) != 1 || r.Findings[0].ID != "CVE-2024-24790" || r.Subject != d.DigestStr() {
				t.Errorf("vuln result = %+v", r)
			}
			if vp.Scanner.URI != "pkg:generic/trivy@0.74.0" || vp.Scanner.Version != "0.74.0" || !strings.HasPrefix(vp.Scanner.DB.Version, "v2 ") {
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

// TestVerifyDenials: each way an image can fail the policy is a
// *PolicyError naming the reason, never a pass.
func TestVerifyDenials(t *testing.T) {
	ctx := context.Background()
	host := realRegistry(t)
	key, pub, otherPub := testKey(t, "cosign"), testPub(t, "cosign"), testPub(t, "other")
	now := time.Now()
	sbom := WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte(testSPDX)})

	for _, tc := range []struct {
		name string
		// setup pushes and signs images in repo and returns the reference
		// to verify.
		setup func(t *testing.T, repo name.Repository) name.Reference
		pol   Policy
		opts  []Option
		want  string
	}{{
		name: "unsigned",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			pushIndex(t, repo, "v1", testIndex(t))
			return repo.Tag("v1")
		},
		want: "no signatures found",
	}, {
		name: "signed by another key",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, testKey(t, "other"), idx, repo)
			return repo.Tag("v1")
		},
		want: "none of 1 signatures is valid",
	}, {
		name: "signature copied from another image",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			a, b := testIndex(t), testIndex(t)
			da := pushIndex(t, repo, "a", a)
			db := pushIndex(t, repo, "b", b)
			signAndWrite(t, key, a, repo)
			_, img := sigTagImage(t, da, "sig")
			tagB := db.Context().Tag(strings.Replace(db.DigestStr(), ":", "-", 1) + ".sig")
			if err := remote.Write(tagB, img); err != nil {
				t.Fatal(err)
			}
			return repo.Tag("b")
		},
		want: "invalid or missing digest in claim",
	}, {
		name: "payload digest edited",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			a, b := testIndex(t), testIndex(t)
			pushIndex(t, repo, "a", a)
			db := pushIndex(t, repo, "b", b)
			signAndWrite(t, key, a, repo)
			signAndWrite(t, key, b, repo)
			ha, _ := a.Digest()
			rewriteSignature(t, db, func(p []byte, b64 string) ([]byte, string) {
				return bytes.ReplaceAll(p, []byte(db.DigestStr()), []byte(ha.String())), b64
			})
			return repo.Tag("b")
		},
		want: "invalid signature",
	}, {
		name: "signature bytes flipped",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			d := pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			rewriteSignature(t, d, func(p []byte, b64 string) ([]byte, string) { return p, flipB64(t, b64) })
			return repo.Tag("v1")
		},
		want: "invalid signature when validating",
	}, {
		name: "signature deleted",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			d := pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			tag, img := sigTagImage(t, d, "sig")
			h, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Delete(tag.Context().Digest(h.String())); err != nil {
				t.Fatal(err)
			}
			return repo.Tag("v1")
		},
		want: "no signatures found",
	}, {
		name: "threshold 2 with one signature",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub, otherPub}, Threshold: 2},
		want: "valid signatures from 1 of 2 trusted keys, threshold is 2",
	}, {
		name: "required attestation missing",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo, sbom)
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, RequireAttestations: []string{vocab.KindSBOM, vocab.KindProvenance}},
		want: "required provenance attestation missing",
	}, {
		name: "attestation by an untrusted key",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			signAndWrite(t, testKey(t, "other"), idx, repo, sbom)
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, RequireAttestations: []string{vocab.KindSBOM}},
		want: "required sbom attestation missing",
	}, {
		name: "critical finding above max severity",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo, WithVulnReport(testReport(t, idx, now, scan.SeverityCritical)))
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, MaxSeverity: scan.SeverityHigh},
		want: "1 finding(s) at or above HIGH: CRITICAL CVE-2024-24790",
	}, {
		name: "no vuln attestation for max severity",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo, sbom)
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, MaxSeverity: scan.SeverityHigh},
		want: "no vuln attestation",
	}, {
		name: "scan older than max age",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo, WithVulnReport(testReport(t, idx, now.Add(-72*time.Hour), scan.SeverityLow)))
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, MaxScanAge: 24 * time.Hour},
		want: "older than the maximum 24h0m0s",
	}, {
		name: "base digest not allowed",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo, WithProvenance(testProvenance()))
			return repo.Tag("v1")
		},
		pol:  Policy{Keys: []*PublicKey{pub}, AllowedBaseDigests: []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}}},
		want: "base image " + baseDigest.String() + " is not an allowed base digest",
	}, {
		name: "too many signatures",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			d := pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			tag, _ := sigTagImage(t, d, "sig")
			var list []oci.Signature
			for i := range MaxSignatures + 1 {
				s, err := static.NewSignature([]byte(fmt.Sprintf(`{"n":%d}`, i)), base64.StdEncoding.EncodeToString([]byte("x")))
				if err != nil {
					t.Fatal(err)
				}
				list = append(list, s)
			}
			writeSigImage(t, tag, list...)
			return repo.Tag("v1")
		},
		want: fmt.Sprintf("has %d layers, more than %d", MaxSignatures+1, MaxSignatures),
	}, {
		name: "oversized signature payload",
		setup: func(t *testing.T, repo name.Repository) name.Reference {
			idx := testIndex(t)
			pushIndex(t, repo, "v1", idx)
			signAndWrite(t, key, idx, repo)
			return repo.Tag("v1")
		},
		opts: []Option{WithPayloadLimits(64, 0)},
		want: "more than the 64 allowed",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := mustRepo(t, host+"/"+strings.ReplaceAll(tc.name, " ", "-"))
			ref := tc.setup(t, repo)
			pol := tc.pol
			if pol.Keys == nil {
				pol.Keys = []*PublicKey{pub}
			}
			v, err := Verify(ctx, ref, pol, tc.opts...)
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Verify = %+v, %v; want a *PolicyError", v, err)
			}
			if v == nil || v.Passed || !strings.Contains(strings.Join(pe.Reasons, "\n"), tc.want) {
				t.Fatalf("reasons = %q, want one containing %q", pe.Reasons, tc.want)
			}
			if !strings.Contains(strings.Join(v.Reasons, "\n"), tc.want) || pe.Image != v.Image {
				t.Errorf("verdict %+v does not match error %v", v, pe)
			}
		})
	}
}

// TestVerifyRegistryErrorsFailClosed: a registry answering 500 for the
// signature or attestation tag makes Verify fail with an operational error,
// neither a pass nor a policy denial.
func TestVerifyRegistryErrorsFailClosed(t *testing.T) {
	host := realRegistry(t)
	repo := mustRepo(t, host+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key, pub := testKey(t, "cosign"), testPub(t, "cosign")
	signAndWrite(t, key, idx, repo, WithSBOM(SBOM{Format: vocab.SBOMSPDXJSON, Document: []byte(testSPDX)}))
	pol := Policy{Keys: []*PublicKey{pub}, RequireAttestations: []string{vocab.KindSBOM}}
	if _, err := Verify(context.Background(), repo.Tag("v1"), pol); err != nil {
		t.Fatalf("Verify without failures: %v", err)
	}
	tagPart := strings.Replace(d.DigestStr(), ":", "-", 1)
	noRetry := WithRemoteOptions(remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	for _, fail := range []string{tagPart + ".sig", tagPart + ".att", "/blobs/"} {
		t.Run(fail, func(t *testing.T) {
			proxied := mustRepo(t, failingProxy(t, host, fail)+"/app")
			v, err := Verify(context.Background(), proxied.Tag("v1"), pol, noRetry)
			if err == nil || v != nil {
				t.Fatalf("Verify = %+v, %v; want an error", v, err)
			}
			var pe *PolicyError
			if errors.As(err, &pe) {
				t.Fatalf("Verify = %v; want an operational error, not a policy denial", err)
			}
			if !strings.Contains(err.Error(), "500") && !strings.Contains(err.Error(), "injected failure") {
				t.Errorf("error %q does not show the registry failure", err)
			}
		})
	}
}

// TestVerifyTagMoved: the verdict names the digest that was verified, even
// when the tag moves right after.
func TestVerifyTagMoved(t *testing.T) {
	repo := mustRepo(t, realRegistry(t)+"/app")
	key, pub := testKey(t, "cosign"), testPub(t, "cosign")
	first, second := testIndex(t), testIndex(t)
	d1 := pushIndex(t, repo, "prod", first)
	signAndWrite(t, key, first, repo)
	v, err := Verify(context.Background(), repo.Tag("prod"), Policy{Keys: []*PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	d2 := pushIndex(t, repo, "prod", second) // the tag moves to an unsigned image
	if d1 == d2 {
		t.Fatal("test images have the same digest")
	}
	if v.Image != d1.String() || v.Ref() != d1 {
		t.Errorf("verdict image %s, want the verified %s", v.Image, d1)
	}
	cur, err := remote.Head(repo.Tag("prod"))
	if err != nil {
		t.Fatal(err)
	}
	if cur.Digest.String() != d2.DigestStr() {
		t.Fatalf("tag points at %s, want %s", cur.Digest, d2.DigestStr())
	}
	// Deploying v.Image still gets the verified image.
	if _, err := Verify(context.Background(), v.Ref(), Policy{Keys: []*PublicKey{pub}}); err != nil {
		t.Errorf("verifying the returned digest: %v", err)
	}
	if _, err := Verify(context.Background(), repo.Tag("prod"), Policy{Keys: []*PublicKey{pub}}); err == nil {
		t.Error("the moved tag (unsigned image) verified")
	}
}

func TestVerifyBase(t *testing.T) {
	repo := mustRepo(t, memRegistry(t)+"/base")
	key, pub := testKey(t, "cosign"), testPub(t, "cosign")
	signed, unsigned := testIndex(t), testIndex(t)
	ds := pushIndex(t, repo, "signed", signed)
	pushIndex(t, repo, "unsigned", unsigned)
	signAndWrite(t, key, signed, repo)

	got, err := VerifyBase(context.Background(), repo.Tag("signed"), []*PublicKey{pub})
	if err != nil || got != ds {
		t.Fatalf("VerifyBase(signed) = %v, %v; want %s", got, err, ds)
	}
	var pe *PolicyError
	if _, err := VerifyBase(context.Background(), repo.Tag("unsigned"), []*PublicKey{pub}); !errors.As(err, &pe) {
		t.Errorf("VerifyBase(unsigned) = %v; want a *PolicyError", err)
	}
	if _, err := VerifyBase(context.Background(), repo.Tag("signed"), []*PublicKey{testPub(t, "other")}); !errors.As(err, &pe) {
		t.Errorf("VerifyBase(wrong key) = %v; want a *PolicyError", err)
	}
}

func TestPolicyValidation(t *testing.T) {
	pub := testPub(t, "cosign")
	for _, pol := range []Policy{
		{},
		{Keys: []*PublicKey{pub, pub}, Threshold: 2},
		{Keys: []*PublicKey{pub}, RequireAttestations: []string{"sbomb"}},
		{Keys: []*PublicKey{pub}, MaxSeverity: "SEVERE"},
		{Keys: []*PublicKey{pub}, MaxScanAge: -time.Hour},
	} {
		v, err := Verify(context.Background(), name.MustParseReference("127.0.0.1:1/never/contacted:v1"), pol)
		var pe *PolicyError
		if err == nil || errors.As(err, &pe) || v != nil {
			t.Errorf("Verify with invalid policy %+v = %v, %v; want a usage error", pol, v, err)
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
	if err := WriteRemote(context.Background(), repo, sigs); err != nil {
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
