package sign

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxReferrerManifestBytes bounds one referrer manifest.
const maxReferrerManifestBytes = 64 << 10

// bundleMediaTypePrefix is what every Sigstore bundle media type starts
// with (cosign accepts any version from v0.3 on).
const bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// authority is one trusted signer: a key or a keyless identity.
type authority struct {
	id       string // what the threshold counts
	key      *PublicKey
	identity *Identity
	certID   sgverify.CertificateIdentity
}

// bundles reads the Sigstore bundle referrers of the digest and verifies
// each against every authority. Image signatures (SignPredicateType) count
// for the threshold; other statements are attestations, read when the
// policy needs them.
func (vr *verifier) bundles(v *Verdict, needAtts bool) error {
	descs, err := listBundleReferrers(vr.digest, vr.ropts)
	if err != nil {
		return err
	}
	if len(descs) > MaxSignatures {
		return &denial{fmt.Sprintf("%s has %d bundle referrers, more than %d", vr.hash, len(descs), MaxSignatures)}
	}
	for _, desc := range descs {
		res := SignatureResult{Layer: desc.Digest.String(), Format: string(FormatBundle)}
		raw, err := vr.fetchReferrerBundle(desc)
		if err != nil {
			var den *denial
			if errors.As(err, &den) {
				res.Error = den.reason
				v.Signatures = append(v.Signatures, res)
				continue
			}
			return err
		}
		b, err := parseBundle(raw)
		if err != nil {
			res.Error = err.Error()
			v.Signatures = append(v.Signatures, res)
			continue
		}
		auth, vres, err := vr.verifyBundle(b)
		if err != nil {
			res.Error = firstLine(err)
			v.Signatures = append(v.Signatures, res)
			continue
		}
		st, err := resultStatement(vres)
		if err != nil {
			// Verified yet unreadable: fail closed.
			return &denial{fmt.Sprintf("bundle %s is signed but its statement is unreadable: %v", desc.Digest, err)}
		}
		if st.PredicateType == SignPredicateType {
			res.KeyID, res.Identity = auth.keyID(), auth.identityString()
			vr.sigKeys[auth.id] = true
			v.Signatures = append(v.Signatures, res)
			continue
		}
		if !needAtts {
			continue
		}
		ares := AttestationResult{Layer: desc.Digest.String(), Format: string(FormatBundle), PredicateType: st.PredicateType,
			Kind: KindOf(st.PredicateType), KeyID: auth.keyID(), Identity: auth.identityString()}
		if ares.Kind != "" {
			vr.atts[ares.Kind] = append(vr.atts[ares.Kind], verifiedStatement{keyID: auth.id, layer: ares.Layer, st: st})
		}
		v.Attestations = append(v.Attestations, ares)
	}
	return nil
}

// fetchReferrerBundle reads a referrer manifest and its one bundle layer,
// bounded, checking digests. A referrer that is not a bundle, or breaks
// the bounds, is a *denial of that referrer.
func (vr *verifier) fetchReferrerBundle(desc v1.Descriptor) ([]byte, error) {
	if desc.Size > maxReferrerManifestBytes {
		return nil, &denial{fmt.Sprintf("referrer manifest is %d bytes, more than %d", desc.Size, maxReferrerManifestBytes)}
	}
	rd, err := remote.Get(vr.digest.Context().Digest(desc.Digest.String()), vr.ropts...)
	if err != nil {
		return nil, fmt.Errorf("reading referrer %s: %w", desc.Digest, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rd.Manifest))
	if err != nil {
		return nil, &denial{fmt.Sprintf("referrer manifest is unreadable: %v", err)}
	}
	if m.Subject == nil || m.Subject.Digest != vr.hash {
		return nil, &denial{"referrer's subject is not the verified digest"}
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(string(m.Layers[0].MediaType), bundleMediaTypePrefix) {
		return nil, &denial{"referrer is not a Sigstore bundle (want one bundle layer)"}
	}
	l := m.Layers[0]
	if l.Size < 0 || l.Size > vr.opts.maxAttBytes {
		return nil, &denial{fmt.Sprintf("bundle layer %s is %d bytes, more than the %d allowed", l.Digest, l.Size, vr.opts.maxAttBytes)}
	}
	return vr.fetchBlob(l, "bundle")
}

// verifyBundle verifies b against each authority in turn and returns the
// first that accepts it.
func (vr *verifier) verifyBundle(b *sgbundle.Bundle) (*authority, *sgverify.VerificationResult, error) {
	digest, err := hex.DecodeString(vr.hash.Hex)
	if err != nil || vr.hash.Algorithm != "sha256" {
		return nil, nil, fmt.Errorf("digest %s is not sha256", vr.hash)
	}
	artifact := sgverify.WithArtifactDigest("sha256", digest)
	firstErr := errors.New("no trusted key or identity")
	isCert := b.VerificationMaterial.GetPublicKey() == nil
	for i := range vr.authorities {
		a := &vr.authorities[i]
		if (a.key != nil) == isCert {
			continue // a key cannot verify a certificate bundle, nor an identity a key bundle
		}
		tm, opts := vr.trustFor(a, b)
		ver, err := sgverify.NewVerifier(tm, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("configuring verifier: %w", err)
		}
		pol := []sgverify.PolicyOption{sgverify.WithKey()}
		if a.identity != nil {
			pol = []sgverify.PolicyOption{sgverify.WithCertificateIdentity(a.certID)}
		}
		res, err := ver.Verify(b, sgverify.NewPolicy(artifact, pol...))
		if err != nil {
			if firstErr.Error() == "no trusted key or identity" {
				firstErr = err
			}
			continue
		}
		return a, res, nil
	}
	return nil, nil, firstErr
}

// trustFor is the trusted material and verifier options one authority is
// checked with. A certificate needs an observer timestamp (a timestamp
// authority's, or a log's when the trusted root has the log): Fulcio
// certificates are checked at that time. Logs and timestamps are required
// when the policy says so.
func (vr *verifier) trustFor(a *authority, b *sgbundle.Bundle) (root.TrustedMaterial, []sgverify.VerifierOption) {
	var tm root.TrustedMaterialCollection
	if vr.policy.TrustedRoot != nil {
		tm = append(tm, vr.policy.TrustedRoot)
	}
	var opts []sgverify.VerifierOption
	logged := vr.policy.RequireTlog
	if !logged && vr.policy.TrustedRoot != nil && len(vr.policy.TrustedRoot.RekorLogs()) > 0 && len(b.GetVerificationMaterial().GetTlogEntries()) > 0 {
		logged = true // a log the trusted root knows: check it, and use its time
	}
	if logged {
		opts = append(opts, sgverify.WithTransparencyLog(1))
	}
	if vr.policy.RequireTimestamp {
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	}
	if a.key != nil {
		k := root.NewExpiringKey(a.key.verifier, time.Time{}, time.Time{})
		tm = append(tm, root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return k, nil }))
		if !vr.policy.RequireTimestamp {
			opts = append(opts, sgverify.WithNoObserverTimestamps()) // a key does not expire
		}
		return tm, opts
	}
	opts = append(opts, sgverify.WithObserverTimestamps(1))
	return tm, opts
}

// resultStatement is the verified in-toto statement of a DSSE bundle.
func resultStatement(res *sgverify.VerificationResult) (*intotoStatement, error) {
	if res.Statement == nil {
		return nil, errors.New("bundle holds no in-toto statement")
	}
	raw, err := protojson.Marshal(res.Statement)
	if err != nil {
		return nil, err
	}
	var st intotoStatement
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, err
	}
	if st.PredicateType == "" {
		return nil, errors.New("statement has no predicate type")
	}
	return &st, nil
}

func (a *authority) keyID() string {
	if a.key != nil {
		return a.key.id
	}
	return ""
}

func (a *authority) identityString() string {
	if a.identity != nil {
		return a.identity.String()
	}
	return ""
}
