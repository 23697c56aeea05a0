package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"
)

// Format says where signatures and attestations are stored.
type Format string

// Formats.
const (
	// FormatBoth writes Sigstore bundles as OCI 1.1 referrers and cosign
	// v2's legacy "sha256-<hex>.sig/.att" tags (the default with a key:
	// cosign v2 and policy-controller key authorities read only the tags).
	FormatBoth Format = "both"
	// FormatBundle writes Sigstore bundles (v0.3, DSSE) as OCI 1.1
	// referrers of the digest they cover, as cosign v3 does.
	FormatBundle Format = "bundle"
	// FormatLegacy writes cosign v2's tags only.
	FormatLegacy Format = "legacy"
)

// Formats lists the valid formats.
func Formats() []string {
	return []string{string(FormatBoth), string(FormatBundle), string(FormatLegacy)}
}

// ParseFormat parses a format name; "" is FormatBoth.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return FormatBoth, nil
	case FormatBoth, FormatBundle, FormatLegacy:
		return f, nil
	}
	return "", fmt.Errorf("unknown signature format %q (want both, bundle or legacy)", s)
}

func (f Format) bundles() bool { return f == FormatBoth || f == FormatBundle || f == "" }
func (f Format) legacy() bool  { return f == FormatBoth || f == FormatLegacy || f == "" }

// Bundle referrers, as cosign v3 writes them.
const (
	// BundleMediaType is the Sigstore bundle v0.3 media type: the
	// referrer's artifactType and its one layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// SignPredicateType is the predicate of an image signature in bundle
	// form (an in-toto statement about the digest with an empty predicate).
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// AnnotationBundleContent and AnnotationBundlePredicateType are the
	// referrer manifest annotations cosign v3 writes and filters on.
	AnnotationBundleContent       = "dev.sigstore.bundle.content"
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	// annotationCreated is the OCI creation time annotation.
	annotationCreated = "org.opencontainers.image.created"
	// AnnotationStatementDigest and AnnotationSigner are slipway's:
	// the sha256 of the signed in-toto statement and who signed it (a key
	// ID or a keyless identity). A rerun that finds a referrer with both
	// equal writes nothing. They are unsigned hints, never trusted by
	// verification: a forged one can only make slipway skip a write,
	// which verification then reports as a missing signature.
	AnnotationStatementDigest = "dev.slipway.statement.digest"
	AnnotationSigner          = "dev.slipway.signer"
	emptyJSONMediaType        = "application/vnd.oci.empty.v1+json"
)

// emptyJSON is the OCI empty descriptor's content, and emptyDigest its
// digest.
var (
	emptyJSON      = []byte("{}")
	emptyDigest, _ = v1.NewHash("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
)

// Bundle is one Sigstore bundle to store as a referrer of its subject.
type Bundle struct {
	// PredicateType is the signed statement's predicate type
	// (SignPredicateType for an image signature).
	PredicateType string
	// JSON is the bundle, serialised as protojson (what cosign writes).
	JSON []byte
	// StatementDigest is the sha256 of the signed statement.
	StatementDigest v1.Hash
	// Signer is the key ID or keyless identity that signed it.
	Signer string
	// Created is when it was signed (RFC 3339, UTC).
	Created string
}

// keypair adapts a sigstore SignerVerifier (a cosign key file or a KMS key)
// to sigstore-go's sign.Keypair, the way cosign v3 does: the hint is the
// base64 sha256 of the DER public key, the algorithm sigstore's default
// for the key.
type keypair struct {
	sv     signature.SignerVerifier
	pub    crypto.PublicKey
	hint   []byte
	keyAlg string
	alg    signature.AlgorithmDetails
}

var _ sgsign.Keypair = (*keypair)(nil)

func newKeypair(sv signature.SignerVerifier) (*keypair, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	var keyAlg string
	switch pub.(type) {
	case *ecdsa.PublicKey:
		keyAlg = "ECDSA"
	case *rsa.PublicKey:
		keyAlg = "RSA"
	case ed25519.PublicKey:
		keyAlg = "ED25519"
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
	alg, err := signature.GetDefaultAlgorithmDetails(pub)
	if err != nil {
		return nil, fmt.Errorf("choosing signature algorithm: %w", err)
	}
	return &keypair{sv: sv, pub: pub, hint: []byte(base64.StdEncoding.EncodeToString(sum[:])), keyAlg: keyAlg, alg: alg}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetKeyAlgorithm() string        { return k.keyAlg }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.pub }
func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.pub)
	return string(b), err
}

// SignData implements sign.Keypair.
func (k *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	opts := []signature.SignOption{sigopts.WithContext(ctx)}
	var digest []byte
	if h := k.alg.GetHashType(); h != 0 {
		hh := h.New()
		hh.Write(data)
		digest = hh.Sum(nil)
		opts = append(opts, sigopts.WithDigest(digest))
	}
	sig, err := k.sv.SignMessage(bytes.NewReader(data), opts...)
	if err != nil {
		return nil, nil, err
	}
	return sig, digest, nil
}

// onceCertificate asks the wrapped provider (Fulcio) for one certificate
// and hands the same one out for every bundle of a run: one identity token
// exchange per run, as cosign does per invocation.
type onceCertificate struct {
	p    sgsign.CertificateProvider
	mu   sync.Mutex
	cert []byte
}

func (o *onceCertificate) GetCertificate(ctx context.Context, kp sgsign.Keypair, opts *sgsign.CertificateProviderOptions) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cert != nil {
		return o.cert, nil
	}
	c, err := o.p.GetCertificate(ctx, kp, opts)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, errors.New("certificate authority returned no certificate")
	}
	o.cert = c
	return c, nil
}

// statementDigest is the sha256 of a serialised statement.
func statementDigest(stmt []byte) v1.Hash {
	sum := sha256.Sum256(stmt)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// makeBundle signs an in-toto statement as a DSSE envelope in a Sigstore
// bundle v0.3, with whatever certificate, timestamps and log entries the
// signer's services give.
func (s *Signer) makeBundle(ctx context.Context, predicateType string, stmt []byte) (*Bundle, error) {
	if s.kp == nil {
		return nil, errors.New("no bundle signing key")
	}
	opts := s.services.bundleOptions(ctx)
	pb, err := sgsign.Bundle(&sgsign.DSSEData{Data: stmt, PayloadType: intotoPayloadType}, s.kp, opts)
	if err != nil {
		return nil, fmt.Errorf("making Sigstore bundle: %w", err)
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encoding Sigstore bundle: %w", err)
	}
	return &Bundle{PredicateType: predicateType, JSON: raw, StatementDigest: statementDigest(stmt), Signer: s.signerID, Created: s.opts.now().UTC().Format("2006-01-02T15:04:05Z")}, nil
}

// parseBundle decodes a bundle and checks it is v0.3 or later.
func parseBundle(raw []byte) (*sgbundle.Bundle, error) {
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("decoding Sigstore bundle: %w", err)
	}
	if !b.MinVersion("v0.3") {
		return nil, fmt.Errorf("Sigstore bundle version %q is older than v0.3", b.GetMediaType())
	}
	return &b, nil
}
