package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

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
		want: "valid signatures from 1 of 2 trusted keys and identities, threshold is 2",
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
