package sign

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Keyless signing against sigstore-go's virtual Sigstore: its Fulcio CA
// certifies the signing key, its Rekor logs each bundle (there is no Rekor
// server in the tests; the e2e tests use a real Fulcio and timestamp
// authority without a log).

const (
	testIssuer   = "https://issuer.example"
	testIdentity = "builder@example.com"
)

// fixedCert is a certificate provider handing out one certificate.
type fixedCert struct{ der []byte }

func (f fixedCert) GetCertificate(context.Context, sgsign.Keypair, *sgsign.CertificateProviderOptions) ([]byte, error) {
	return f.der, nil
}

// vsLog enters bundles in the virtual Sigstore's log at a chosen time.
type vsLog struct {
	vs   *ca.VirtualSigstore
	leaf *x509.Certificate
	at   time.Time
}

func (l *vsLog) GetTransparencyLogEntry(_ context.Context, _ []byte, b *protobundle.Bundle) error {
	env := b.GetDsseEnvelope()
	if env == nil || len(env.Signatures) != 1 {
		return errors.New("want a DSSE envelope with one signature")
	}
	sig := env.Signatures[0].Sig
	e := &ssldsse.Envelope{PayloadType: env.PayloadType, Payload: base64.StdEncoding.EncodeToString(env.Payload),
		Signatures: []ssldsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}}
	entry, err := l.vs.GenerateTlogEntry(l.leaf, e, sig, l.at.Unix(), true)
	if err != nil {
		return err
	}
	tle := entry.TransparencyLogEntry() // NewEntry leaves the kind out
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	logID, err := l.vs.RekorLogID()
	if err != nil {
		return err
	}
	set, err := l.vs.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime, LogIndex: tle.LogIndex, LogID: logID})
	if err != nil {
		return err
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, tle)
	return nil
}

// keylessSigner is a keyless Signer whose certificate comes from vs for
// testIdentity, logged at logAt (zero: no log).
func keylessSigner(t *testing.T, vs *ca.VirtualSigstore, logAt time.Time) *Signer {
	t.Helper()
	leaf, priv, err := vs.GenerateLeafCert(testIdentity, testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv.(crypto.Signer), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := newKeypair(sv)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Services{FulcioURL: "https://fulcio.invalid", TrustedRoot: vs}
	if !logAt.IsZero() {
		svc.Transparency = &vsLog{vs: vs, leaf: leaf, at: logAt}
	}
	svc.keyless = &keylessState{token: "unused", id: testIssuer + " " + testIdentity, cert: &onceCertificate{p: fixedCert{leaf.Raw}}}
	return &Signer{kp: kp, signerID: svc.keyless.id, format: FormatBundle, services: svc, opts: makeOptions(nil), log: makeOptions(nil).log}
}

// vsFixture is a virtual Sigstore and an index pushed to a registry.
func vsFixture(t *testing.T) (*ca.VirtualSigstore, name.Repository, v1.ImageIndex, name.Digest) {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	return vs, repo, idx, pushIndex(t, repo, "v1", idx)
}

func TestKeylessBundleVerify(t *testing.T) {
	vs, repo, idx, d := vsFixture(t)
	signWrite(t, keylessSigner(t, vs, time.Now()), idx, repo, WithSBOM(testSBOM))

	pol := func(id Identity) Policy { return Policy{Identities: []Identity{id}, TrustedRoot: vs} }
	exact := Identity{Issuer: testIssuer, Subject: testIdentity}
	v, err := Verify(context.Background(), d, Policy{Identities: []Identity{exact}, TrustedRoot: vs, RequireTlog: true, RequireAttestations: []string{"sbom"}})
	if err != nil {
		t.Fatalf("Verify exact identity with a log: %v", err)
	}
	if len(v.Signatures) != 1 || v.Signatures[0].Identity != exact.String() || len(v.Attestations) != 1 {
		t.Errorf("verdict %+v", v)
	}
	if _, err := Verify(context.Background(), d, pol(Identity{IssuerRegexp: `^https://issuer\.example$`, SubjectRegexp: `^.*@example\.com$`})); err != nil {
		t.Errorf("Verify anchored regexps: %v", err)
	}
	var pe *PolicyError
	for _, wrong := range []Identity{
		{Issuer: testIssuer, Subject: "intruder@example.com"},
		{Issuer: "https://other.example", Subject: testIdentity},
		{Issuer: testIssuer, SubjectRegexp: `^builder@example\.co$`},
	} {
		if _, err := Verify(context.Background(), d, pol(wrong)); !errors.As(err, &pe) {
			t.Errorf("Verify %s = %v, want a denial", wrong, err)
		}
	}
	if _, err := Verify(context.Background(), d, pol(Identity{Issuer: testIssuer, SubjectRegexp: `builder`})); err == nil || errors.As(err, &pe) {
		t.Errorf("unanchored regexp: %v, want a policy error (not a denial)", err)
	}
	// A key does not verify a certificate bundle.
	if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{testPub(t, "cosign")}}); !errors.As(err, &pe) {
		t.Errorf("Verify with a key = %v, want a denial", err)
	}
}

// TestKeylessCertificateOutsideValidity: a bundle logged an hour after its
// 10-minute certificate expired is denied: the certificate is checked at
// the logged time, not now.
func TestKeylessCertificateOutsideValidity(t *testing.T) {
	vs, repo, idx, d := vsFixture(t)
	s := keylessSigner(t, vs, time.Now().Add(time.Hour))
	s.services.TrustedRoot = nil // the signer's own check would refuse it too
	signWrite(t, s, idx, repo)
	v, err := Verify(context.Background(), d, Policy{Identities: []Identity{{Issuer: testIssuer, Subject: testIdentity}}, TrustedRoot: vs})
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("Verify = %v, want a denial", err)
	}
	if len(v.Signatures) != 1 || !strings.Contains(v.Signatures[0].Error, "certificate") {
		t.Errorf("signatures %+v", v.Signatures)
	}
}

// TestKeylessNeedsObserverTime: a keyless bundle with neither log entry nor
// timestamp cannot be verified after its certificate expires, so it is
// never accepted, and the signer refuses to make one.
func TestKeylessNeedsObserverTime(t *testing.T) {
	vs, repo, idx, d := vsFixture(t)
	if err := (&Services{FulcioURL: "https://f", TrustedRoot: vs}).keylessReady(); err == nil || !strings.Contains(err.Error(), "transparency log or a timestamp authority") {
		t.Errorf("keylessReady without log or TSA = %v", err)
	}
	s := keylessSigner(t, vs, time.Time{})
	s.services.TrustedRoot = nil
	signWrite(t, s, idx, repo)
	var pe *PolicyError
	if _, err := Verify(context.Background(), d, Policy{Identities: []Identity{{Issuer: testIssuer, Subject: testIdentity}}, TrustedRoot: vs}); !errors.As(err, &pe) {
		t.Errorf("Verify of an untimed keyless bundle = %v, want a denial", err)
	}
}

// TestKeyBundleRequireTlog: require_tlog refuses a key bundle without a log
// entry and a legacy signature, and accepts a logged key bundle.
func TestKeyBundleRequireTlog(t *testing.T) {
	vs, repo, idx, d := vsFixture(t)
	key := testKey(t, "cosign")
	signWrite(t, bundleSigner(t, key), idx, repo) // no log
	signAndWrite(t, key, idx, repo)               // legacy
	pol := Policy{Keys: []*PublicKey{key.Public()}, TrustedRoot: vs, RequireTlog: true}
	var pe *PolicyError
	if _, err := Verify(context.Background(), d, pol); !errors.As(err, &pe) {
		t.Fatalf("require_tlog without a logged bundle = %v, want a denial", err)
	}
	if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, RequireTlog: true}); err == nil || errors.As(err, &pe) {
		t.Errorf("require_tlog without a trusted root = %v, want a policy error", err)
	}
}
