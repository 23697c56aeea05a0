package sign

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/sign/vocab"
)

// bundleSigner is a key Signer writing only bundles.
func bundleSigner(t testing.TB, key *PrivateKey) *Signer {
	t.Helper()
	s, err := NewSigner(SignerConfig{Key: key, Format: FormatBundle})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signWrite(t testing.TB, s *Signer, idx v1.ImageIndex, repo name.Repository, opts ...SignOption) *Signatures {
	t.Helper()
	sigs, err := s.Sign(context.Background(), idx, repo, opts...)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := WriteRemote(context.Background(), repo, sigs, nil, http.DefaultTransport); err != nil {
		t.Fatalf("WriteRemote: %v", err)
	}
	return sigs
}

var testSBOM = SBOM{Format: vocab.SBOMCycloneDX, Document: []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}`)}

// referrerManifest is a referrer as stored.
type referrerManifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       v1.Descriptor     `json:"config"`
	Layers       []v1.Descriptor   `json:"layers"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// TestBundleReferrerShape checks that bundles are stored as cosign v3
// stores them (artifactType, empty config, one bundle layer, subject,
// annotations), through the referrers API (ggcr's registry) and through the
// referrers tag (docker-registry), and that they verify with the key only.
func TestBundleReferrerShape(t *testing.T) {
	for _, reg := range []struct {
		name string
		host func(testing.TB) string
	}{{"referrers tag (ggcr)", memRegistry}, {"referrers API (ggcr, config type as artifactType)", apiRegistry}, {"referrers tag", realRegistry}} {
		t.Run(reg.name, func(t *testing.T) {
			repo := mustRepo(t, reg.host(t)+"/app")
			idx := testIndex(t)
			d := pushIndex(t, repo, "v1", idx)
			key := testKey(t, "cosign")
			signWrite(t, bundleSigner(t, key), idx, repo, WithSBOM(testSBOM))

			descs, err := listBundleReferrers(d, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(descs) != 2 { // the signature and the SBOM attestation
				t.Fatalf("%d bundle referrers of the index, want 2: %+v", len(descs), descs)
			}
			preds := map[string]bool{}
			for _, desc := range descs {
				rd, err := remote.Get(d.Context().Digest(desc.Digest.String()))
				if err != nil {
					t.Fatal(err)
				}
				var m referrerManifest
				if err := json.Unmarshal(rd.Manifest, &m); err != nil {
					t.Fatal(err)
				}
				if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.ArtifactType != BundleMediaType ||
					m.Config.MediaType != emptyJSONMediaType || m.Config.Size != 2 || len(m.Layers) != 1 ||
					m.Layers[0].MediaType != BundleMediaType || m.Subject == nil || m.Subject.Digest.String() != d.DigestStr() ||
					m.Annotations[AnnotationBundleContent] != "dsse-envelope" || m.Annotations[annotationCreated] == "" {
					t.Errorf("referrer manifest %s", rd.Manifest)
				}
				if desc.ArtifactType != BundleMediaType || desc.Annotations[AnnotationBundlePredicateType] == "" {
					t.Errorf("index entry %+v lacks artifactType or annotations", desc)
				}
				preds[m.Annotations[AnnotationBundlePredicateType]] = true
			}
			if !preds[SignPredicateType] || !preds[PredicateCycloneDX] {
				t.Errorf("predicate types %v", preds)
			}

			v, err := Verify(context.Background(), repo.Tag("v1"), Policy{Keys: []*PublicKey{key.Public()}, RequireAttestations: []string{vocab.KindSBOM}})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(v.Signatures) != 1 || v.Signatures[0].Format != string(FormatBundle) || len(v.Attestations) != 1 {
				t.Errorf("verdict %+v", v)
			}
			var pe *PolicyError
			if _, err := Verify(context.Background(), repo.Tag("v1"), Policy{Keys: []*PublicKey{testPub(t, "other")}}); !errors.As(err, &pe) {
				t.Errorf("Verify with another key = %v, want a *PolicyError", err)
			}
		})
	}
}

// TestBundleRerunWritesNothing: signing the same image again with the same
// key adds no referrer; another key's bundle is added beside it, and a
// referrer another tool put in the referrers tag stays.
func TestBundleRerunWritesNothing(t *testing.T) {
	repo := mustRepo(t, realRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key := testKey(t, "cosign")
	// Another tool's referrer of the index (e.g. an SBOM pushed by oras).
	other := bundleSigner(t, testKey(t, "other"))
	signWrite(t, other, idx, repo)
	count := func() int {
		descs, err := listBundleReferrers(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(descs)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d referrers after the other signer, want 1", n)
	}
	signWrite(t, bundleSigner(t, key), idx, repo, WithSBOM(testSBOM))
	if n := count(); n != 3 {
		t.Fatalf("%d referrers, want 3", n)
	}
	signWrite(t, bundleSigner(t, key), idx, repo, WithSBOM(testSBOM))
	if n := count(); n != 3 {
		t.Fatalf("%d referrers after an unchanged rerun, want 3", n)
	}
	// Threshold 2 counts the two keys' bundles.
	if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public(), testPub(t, "other")}, Threshold: 2}); err != nil {
		t.Errorf("threshold 2 over two keys' bundles: %v", err)
	}
}

// TestBundleAndLegacyCountOnce: the same key in both formats is one signer;
// two keys, one per format, meet threshold 2.
func TestBundleAndLegacyCountOnce(t *testing.T) {
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key, other := testKey(t, "cosign"), testKey(t, "other")
	both, err := NewKeyed(key)
	if err != nil {
		t.Fatal(err)
	}
	signWrite(t, both, idx, repo)
	var pe *PolicyError
	if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public(), other.Public()}, Threshold: 2}); !errors.As(err, &pe) {
		t.Fatalf("one key in two formats met threshold 2: %v", err)
	}
	signAndWrite(t, other, idx, repo) // legacy only
	if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public(), other.Public()}, Threshold: 2}); err != nil {
		t.Errorf("a bundle and a legacy signature by two keys: %v", err)
	}
}

// TestBundleTamperedDenied: a referrer whose bundle bytes no longer match
// its signature (re-pushed with an edited statement) is not counted.
func TestBundleTamperedDenied(t *testing.T) {
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key := testKey(t, "cosign")
	s := bundleSigner(t, key)
	sigs, err := s.Sign(context.Background(), idx, repo)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the index's bundle for one made over a platform manifest: valid
	// signature, wrong subject digest inside the statement.
	subs := sigs.Subjects()
	wrong := subs[1].Bundles[0]
	ri, err := newReferrerImage(v1.Descriptor{MediaType: subs[0].MediaType, Digest: subs[0].Digest, Size: subs[0].Size}, wrong)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ri.image()
	if err != nil {
		t.Fatal(err)
	}
	mh, _ := img.Digest()
	if err := remote.Write(repo.Digest(mh.String()), img); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}})
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("Verify = %+v, %v; want a denial", v, err)
	}
	if len(v.Signatures) != 1 || v.Signatures[0].Error == "" {
		t.Errorf("signatures %+v", v.Signatures)
	}
}

func TestIdentityValidate(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{Issuer: "https://i", Subject: "a@b"}, ""},
		{Identity{IssuerRegexp: `^https://i$`, SubjectRegexp: `^.*@example\.com$`}, ""},
		{Identity{Issuer: "https://i", SubjectRegexp: `.*@example\.com`}, "must be anchored"},
		{Identity{Issuer: "https://i", SubjectRegexp: `^.*@example\.com`}, "must be anchored"},
		{Identity{Issuer: "https://i", SubjectRegexp: `^a\$`}, "must be anchored"},
		{Identity{Subject: "a@b"}, "issuer"},
		{Identity{Issuer: "https://i", Subject: "a", SubjectRegexp: "^a$"}, "subject"},
		{Identity{Issuer: "https://i", SubjectRegexp: `^(a$`}, "regexp"},
	} {
		err := tc.id.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.id, err, tc.want)
		}
	}
	// An alternation cannot escape the anchors.
	ci, err := Identity{Issuer: "https://i", SubjectRegexp: `^a@x\.com|b@x\.com$`}.certificateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.SubjectAlternativeName.Regexp.String(); got != `^(?:^a@x\.com|b@x\.com$)$` {
		t.Errorf("compiled %q", got)
	}
}
