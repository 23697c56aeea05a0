package sign

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/sign/vocab"
)

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

	got, err := VerifyBase(context.Background(), repo.Tag("signed"), Policy{Keys: []*PublicKey{pub}})
	if err != nil || got != ds {
		t.Fatalf("VerifyBase(signed) = %v, %v; want %s", got, err, ds)
	}
	var pe *PolicyError
	if _, err := VerifyBase(context.Background(), repo.Tag("unsigned"), Policy{Keys: []*PublicKey{pub}}); !errors.As(err, &pe) {
		t.Errorf("VerifyBase(unsigned) = %v; want a *PolicyError", err)
	}
	if _, err := VerifyBase(context.Background(), repo.Tag("signed"), Policy{Keys: []*PublicKey{testPub(t, "other")}}); !errors.As(err, &pe) {
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
