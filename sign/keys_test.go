package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	fakekms "github.com/sigstore/sigstore/pkg/signature/kms/fake"
)

func TestGenerateKeyPairLoadsInCosign(t *testing.T) {
	const pw = "correct horse battery staple"
	priv, pub, err := GenerateKeyPair([]byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(priv, []byte("ENCRYPTED SIGSTORE PRIVATE KEY")) {
		t.Fatalf("private key is not in cosign's encrypted format:\n%s", priv)
	}
	// cosign's own loader accepts slipway's key...
	sv, err := cosign.LoadPrivateKey(priv, []byte(pw), nil)
	if err != nil {
		t.Fatalf("cosign.LoadPrivateKey: %v", err)
	}
	// ...and its public half is the public key slipway wrote.
	cpub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	spub, err := ParsePublicKey(pub, "generated")
	if err != nil {
		t.Fatal(err)
	}
	if err := cryptoutils.EqualKeys(cpub, spub.Public()); err != nil {
		t.Fatalf("public keys differ: %v", err)
	}
	msg := []byte("hello")
	sig, err := sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := spub.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		t.Fatalf("slipway's public key rejects cosign's signature: %v", err)
	}

	// slipway loads it too, and a wrong password is ErrWrongPassword.
	path := writeFile(t, "cosign.key", priv)
	k, err := LoadPrivateKeyContext(context.Background(), path, staticPass(pw))
	if err != nil {
		t.Fatal(err)
	}
	if k.Public().ID() != spub.ID() {
		t.Errorf("loaded key ID %s, want %s", k.Public().ID(), spub.ID())
	}
	_, err = LoadPrivateKeyContext(context.Background(), path, staticPass("wrong"))
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: got %v, want ErrWrongPassword", err)
	}
	if strings.Contains(err.Error(), "wrong\"") || strings.Contains(err.Error(), pw) {
		t.Errorf("error mentions a password: %v", err)
	}
}

func TestLoadPrivateKeyRefs(t *testing.T) {
	priv, _, err := GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TEST_KEY", string(priv))
	if _, err := LoadPrivateKeyContext(context.Background(), "env://SLIPWAY_TEST_KEY", staticPass("pw")); err != nil {
		t.Fatalf("env:// key: %v", err)
	}
	for _, tc := range []struct {
		ref, want string
	}{
		{"env://SLIPWAY_TEST_UNSET_VAR", "SLIPWAY_TEST_UNSET_VAR is not set"},
		{"env://", "missing variable name"},
		{filepath.Join(t.TempDir(), "missing.key"), "no such file"},
		{writeFile(t, "pub.pem", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")), "not a cosign encrypted private key"},
		{writeFile(t, "junk", []byte("junk")), "no PEM block"},
		{"https://example.com/cosign.key", "unsupported scheme"},
		{"", "empty key reference"},
	} {
		_, err := LoadPrivateKeyContext(context.Background(), tc.ref, staticPass("pw"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadPrivateKeyContext(context.Background(), %q) = %v, want error containing %q", tc.ref, err, tc.want)
		}
	}
}

// TestCosignKeyPairSignsThroughSlipway: a key pair made by cosign's own
// generator signs through slipway; the signature verifies with slipway and
// with cosign's verification code.
func TestCosignKeyPairSignsThroughSlipway(t *testing.T) {
	const pw = "cosign-made"
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(pw), nil })
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadPrivateKeyContext(context.Background(), writeFile(t, "cosign.key", kb.PrivateBytes), staticPass(pw))
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := LoadPublicKeys(writeFile(t, "cosign.pub", kb.PublicBytes))
	if err != nil {
		t.Fatal(err)
	}
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	signAndWrite(t, key, idx, repo)

	v, err := Verify(context.Background(), repo.Tag("v1"), Policy{Keys: pubs})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !v.Passed || v.Image != d.String() {
		t.Errorf("verdict %+v, want passed for %s", v, d)
	}
	if err := cosignCheck(t, d, pubs[0], nil); err != nil {
		t.Errorf("cosign.VerifyImageSignatures: %v", err)
	}
}

func TestLoadPublicKeysDistinctIDs(t *testing.T) {
	keys, err := LoadPublicKeys(
		filepath.Join("..", "testdata", "keys", "cosign.pub"),
		filepath.Join("..", "testdata", "keys", "other.pub"),
		filepath.Join("..", "testdata", "keys", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if keys[0].ID() == keys[1].ID() || keys[0].ID() != keys[2].ID() {
		t.Errorf("IDs: %s %s %s", keys[0].ID(), keys[1].ID(), keys[2].ID())
	}
	if testKey(t, "cosign").Public().ID() != keys[0].ID() {
		t.Error("testdata cosign.key and cosign.pub are not a pair")
	}
	if _, err := LoadPublicKeys(filepath.Join("..", "testdata", "keys", "cosign.key")); err == nil {
		t.Error("a private key file loaded as a public key")
	}
}

// TestKMSKey signs through sigstore's in-memory fake KMS provider, the same
// code path as awskms:// and friends (sign/kms), without any network.
func TestKMSKey(t *testing.T) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), fakekms.KmsCtxKey{}, crypto.PrivateKey(pk))
	const ref = fakekms.ReferenceScheme + "test-key"
	key, err := LoadPrivateKeyContext(ctx, ref, func(bool) ([]byte, error) {
		t.Error("a KMS key asked for a password")
		return nil, nil
	})
	if err != nil {
		t.Fatalf("LoadPrivateKeyContext(%s): %v", ref, err)
	}
	pubs, err := LoadPublicKeysContext(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if pubs[0].ID() != key.Public().ID() || pubs[0].Ref() != ref {
		t.Fatalf("public key %s, private key %s", pubs[0], key)
	}
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	signAndWrite(t, key, idx, repo)
	if _, err := Verify(ctx, d, Policy{Keys: pubs}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := cosignCheck(t, d, pubs[0], nil); err != nil {
		t.Errorf("cosign.VerifyImageSignatures: %v", err)
	}

	// A provider that is not linked in is refused up front: sigstore's
	// plugin fallback (exec sigstore-kms-<scheme>) is never reached.
	t.Setenv("PATH", t.TempDir())
	for _, ref := range []string{"awskms:///alias/x", "myplugin://key"} {
		if _, err := LoadPrivateKeyContext(ctx, ref, nil); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
			t.Errorf("LoadPrivateKeyContext(%s) = %v, want unsupported scheme", ref, err)
		}
	}
}
