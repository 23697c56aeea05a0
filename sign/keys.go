package sign

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// PassFunc returns the password of an encrypted private key. confirm is true
// when the password is being chosen (key generation) and an interactive
// implementation should ask twice. Implementations must not log the password.
type PassFunc func(confirm bool) ([]byte, error)

// ErrWrongPassword is returned (wrapped) when a private key cannot be
// decrypted: the password is wrong or the encrypted key is corrupt.
var ErrWrongPassword = errors.New("wrong password or corrupt private key")

// envScheme prefixes a key reference read from an environment variable.
const envScheme = "env://"

// maxKeyFileBytes bounds the size of a key file or variable we read.
const maxKeyFileBytes = 64 << 10

// GenerateKeyPair generates an ECDSA P-256 key pair with cosign's own code and
// returns the private key in cosign's encrypted PEM format ("ENCRYPTED
// SIGSTORE PRIVATE KEY": PKCS #8 sealed with scrypt and NaCl secretbox under
// password) and the public key as PEM. Both load in cosign unchanged.
func GenerateKeyPair(password []byte) (priv, pub []byte, err error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) {
		return slices.Clone(password), nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("generating key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// PublicKey is a trusted public key used to verify signatures.
type PublicKey struct {
	key      crypto.PublicKey
	verifier signature.Verifier
	pem      []byte
	id       string
	ref      string
}

// ParsePublicKey parses a PEM-encoded public key (PKIX). ref names where it
// came from, for messages; it may be empty.
func ParsePublicKey(pemBytes []byte, ref string) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parsing public key %s: %w", ref, err)
	}
	return newPublicKey(pub, nil, ref)
}

// newPublicKey wraps pub; v is its verifier, or nil to derive one the way
// cosign's CLI does for --key (SHA-256).
func newPublicKey(pub crypto.PublicKey, v signature.Verifier, ref string) (*PublicKey, error) {
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return nil, fmt.Errorf("validating public key %s: %w", ref, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key %s: %w", ref, err)
	}
	if v == nil {
		v, err = signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("loading verifier for %s: %w", ref, err)
		}
	}
	sum := sha256.Sum256(der)
	return &PublicKey{
		key:      pub,
		verifier: v,
		pem:      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		id:       "sha256:" + hex.EncodeToString(sum[:]),
		ref:      ref,
	}, nil
}

// ID identifies the key: "sha256:" and the hex SHA-256 of its DER
// SubjectPublicKeyInfo. Two references to the same key have the same ID.
func (k *PublicKey) ID() string { return k.id }

// PEM returns the key as a PEM "PUBLIC KEY" block.
func (k *PublicKey) PEM() []byte { return slices.Clone(k.pem) }

// Ref is the reference the key was loaded from (a path, env://VAR, a KMS
// URI), or empty.
func (k *PublicKey) Ref() string { return k.ref }

// Public returns the crypto public key.
func (k *PublicKey) Public() crypto.PublicKey { return k.key }

// String describes the key by reference and ID.
func (k *PublicKey) String() string {
	if k.ref == "" {
		return k.id
	}
	return k.ref + " (" + k.id + ")"
}

// LogValue implements slog.LogValuer.
func (k *PublicKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", k.ref), slog.String("id", k.id))
}

// PrivateKey is a signing key loaded from a cosign key file, an environment
// variable or a KMS. It never exposes key material.
type PrivateKey struct {
	sv  signature.SignerVerifier
	pub *PublicKey
	ref string
}

// Public returns the public half of the key.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// String describes the key by reference and public key ID.
func (k *PrivateKey) String() string { return k.pub.String() }

// LogValue implements slog.LogValuer: only the reference and public key ID.
func (k *PrivateKey) LogValue() slog.Value { return k.pub.LogValue() }

// NewPrivateKey wraps a sigstore SignerVerifier (for example a KMS key or a
// key held by the caller) as a PrivateKey. ref names it in messages.
func NewPrivateKey(sv signature.SignerVerifier, ref string) (*PrivateKey, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading public key of %s: %w", ref, err)
	}
	pk, err := newPublicKey(pub, sv, ref)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{sv: sv, pub: pk, ref: ref}, nil
}

// LoadPrivateKeyContext loads a cosign encrypted private key from ref, a
// file path or env://VAR (the PEM in environment variable VAR), decrypting
// it with the password pf returns (nil pf: empty password), or a KMS key
// (see KMSSchemes), whose API calls use ctx. A wrong password fails with
// ErrWrongPassword.
func LoadPrivateKeyContext(ctx context.Context, ref string, pf PassFunc) (*PrivateKey, error) {
	if isKMSRef(ref) {
		sv, err := loadKMS(ctx, ref)
		if err != nil {
			return nil, err
		}
		return NewPrivateKey(sv, ref)
	}
	raw, err := readKeyRef(ref)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if pf != nil {
		if pass, err = pf(false); err != nil {
			return nil, fmt.Errorf("reading password for %s: %w", ref, err)
		}
	}
	sv, err := decryptPrivateKey(raw, pass, ref)
	if err != nil {
		return nil, err
	}
	return NewPrivateKey(sv, ref)
}

// decryptPrivateKey does what cosign.LoadPrivateKey does, with errors that
// tell a wrong password from an unsupported file.
func decryptPrivateKey(raw, pass []byte, ref string) (signature.SignerVerifier, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("loading private key %s: no PEM block", ref)
	}
	if block.Type != cosign.SigstorePrivateKeyPemType && block.Type != cosign.CosignPrivateKeyPemType {
		return nil, fmt.Errorf("loading private key %s: PEM type %q is not a cosign encrypted private key (want %q)",
			ref, block.Type, cosign.SigstorePrivateKeyPemType)
	}
	der, err := encrypted.Decrypt(block.Bytes, pass)
	if err != nil {
		return nil, fmt.Errorf("loading private key %s: %w", ref, ErrWrongPassword)
	}
	defer clear(der)
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("loading private key %s: parsing PKCS #8: %w", ref, err)
	}
	sv, err := signature.LoadDefaultSignerVerifier(pk, *cosign.GetDefaultLoadOptions(nil)...)
	if err != nil {
		return nil, fmt.Errorf("loading private key %s: %w", ref, err)
	}
	return sv, nil
}

// LoadPublicKeys loads PEM public keys from file paths, env://VAR
// references or inline PEM text ("-----BEGIN PUBLIC KEY-----…"). KMS
// references need LoadPublicKeysContext.
func LoadPublicKeys(refs ...string) ([]*PublicKey, error) {
	return LoadPublicKeysContext(context.Background(), refs...)
}

// LoadPublicKeysContext is LoadPublicKeys with a context for KMS references.
func LoadPublicKeysContext(ctx context.Context, refs ...string) ([]*PublicKey, error) {
	keys := make([]*PublicKey, 0, len(refs))
	for _, ref := range refs {
		if isKMSRef(ref) {
			sv, err := loadKMS(ctx, ref)
			if err != nil {
				return nil, err
			}
			pub, err := sv.PublicKey()
			if err != nil {
				return nil, fmt.Errorf("reading public key %s: %w", ref, err)
			}
			k, err := newPublicKey(pub, sv, ref)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
			continue
		}
		if isInlinePEM(ref) {
			k, err := ParsePublicKey([]byte(strings.TrimSpace(ref)), "(inline PEM)")
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
			continue
		}
		raw, err := readKeyRef(ref)
		if err != nil {
			return nil, err
		}
		k, err := ParsePublicKey(raw, ref)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// isInlinePEM reports whether a public key reference is the PEM itself.
func isInlinePEM(ref string) bool {
	return strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN ")
}

// readKeyRef reads a key from a file path or env://VAR.
func readKeyRef(ref string) ([]byte, error) {
	if ref == "" {
		return nil, errors.New("empty key reference")
	}
	if v, ok := strings.CutPrefix(ref, envScheme); ok {
		if v == "" {
			return nil, fmt.Errorf("key reference %q: missing variable name", ref)
		}
		val, ok := os.LookupEnv(v)
		if !ok || val == "" {
			return nil, fmt.Errorf("reading key %s: environment variable %s is not set", ref, v)
		}
		if len(val) > maxKeyFileBytes {
			return nil, fmt.Errorf("reading key %s: larger than %d bytes", ref, maxKeyFileBytes)
		}
		return []byte(val), nil
	}
	if i := strings.Index(ref, "://"); i > 0 {
		return nil, fmt.Errorf("key reference %q: unsupported scheme %q (want a path, env://VAR or one of %s)",
			ref, ref[:i+3], strings.Join(KMSSchemes(), ", "))
	}
	f, err := os.Open(filepath.Clean(ref))
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("reading key %s: larger than %d bytes", ref, maxKeyFileBytes)
	}
	return b, nil
}

// KMSSchemes lists the KMS reference prefixes (e.g. "awskms://") whose
// sigstore provider is linked into this binary. The sign package itself links
// none; import github.com/slipway-build/slipway/sign/kms for the providers
// slipway ships.
func KMSSchemes() []string {
	s := kms.SupportedProviders()
	slices.Sort(s)
	return s
}

// isKMSRef reports whether ref starts with a registered KMS provider prefix.
// Other schemes never reach sigstore's kms.Get, which would otherwise try to
// execute a "sigstore-kms-<scheme>" plugin found on PATH.
func isKMSRef(ref string) bool {
	for _, p := range kms.SupportedProviders() {
		if strings.HasPrefix(ref, p) {
			return true
		}
	}
	return false
}

func loadKMS(ctx context.Context, ref string) (signature.SignerVerifier, error) {
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("loading kms key %s: %w", ref, err)
	}
	return sv, nil
}
