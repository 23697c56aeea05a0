package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature"
	sdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"golang.org/x/sync/errgroup"
)

// WriteRemote writes the signatures and attestations into repo: legacy ones
// at the tags cosign v2 reads ("sha256-<hex>.sig" and ".att"), merging with
// what is there, and bundles as OCI 1.1 referrers of the digest they cover.
// It is idempotent: a signature that the same key already made over the same
// payload is not added again, and an attestation replaces any earlier one of
// the same predicate type made by the same key (others' attestations stay).
// With rec, a tag that still names what rec says the last write left there,
// holding these statements, is confirmed with one HEAD and not read back.
// The images the signatures refer to must be written first. opts are passed
// to go-containerregistry unchanged (include authentication there). With
// tr, repo's authenticated transport (a publish session's), what this
// write makes is written through it with fewer requests (artifactWriter);
// reads, and everything without tr, go through go-containerregistry.
func WriteRemote(ctx context.Context, repo name.Repository, sigs *Signatures, rec *Record, tr http.RoundTripper, opts ...remote.Option) error {
	if sigs == nil {
		return errors.New("writing signatures: nothing to write")
	}
	var aw *artifactWriter
	if tr != nil {
		aw = newArtifactWriter(repo, tr)
	}
	ropts := append(slices.Clone(opts), remote.WithContext(ctx))
	// One puller for every read (the caller's, when opts reuse one): one
	// authenticated transport per repository, not a handshake per request.
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return fmt.Errorf("writing signatures: %w", err)
	}
	ropts = append(ropts, remote.Reuse(puller))
	// Every referrer shares the empty config blob: it is written once,
	// before any referrer, as referrers are written side by side and a
	// registry storing one blob from several uploads at once can fail
	// them (distribution does).
	writeEmpty := sync.OnceValue(func() error {
		if aw != nil {
			return aw.putBlob(ctx, emptyDigest, emptyJSON, blobUnknown)
		}
		return remote.WriteLayer(repo, static.NewLayer(emptyJSON, emptyJSONMediaType), ropts...)
	})
	// Each subject's .sig tag, .att tag and referrers are separate
	// manifests and tags: written side by side.
	var g errgroup.Group
	g.SetLimit(writeParallelism)
	for _, s := range sigs.subjects {
		if sigs.key != nil {
			g.Go(func() error { return writeLegacySignatures(ctx, repo, sigs, s, rec, aw, ropts) })
			g.Go(func() error { return writeLegacyAttestations(ctx, repo, sigs, s, rec, aw, ropts) })
		}
		g.Go(func() error { return writeBundlesRemote(ctx, repo, s, rec, writeEmpty, aw, ropts) })
	}
	return g.Wait()
}

// writeParallelism bounds the signature tags written at once.
const writeParallelism = 8

// writeLegacySignatures adds one subject's cosign v2 signatures to its
// .sig tag, unless they are there.
func writeLegacySignatures(ctx context.Context, repo name.Repository, sigs *Signatures, s Subject, rec *Record, aw *artifactWriter, ropts []remote.Option) error {
	if len(s.Signatures) == 0 {
		return nil
	}
	tag := SignatureTag(repo, s.Digest)
	want := make([]string, 0, len(s.Signatures))
	for _, sig := range s.Signatures {
		p, err := sig.Payload()
		if err != nil {
			return fmt.Errorf("signature of %s: %w", s.Digest, err)
		}
		want = append(want, held(sigs.key.ID(), p))
	}
	if rec.confirmed(tag, want, ropts) {
		return nil
	}
	oopts := []ociremote.Option{ociremote.WithRemoteOptions(ropts...)}
	d := repo.Digest(s.Digest.String())
	dd := cremote.NewDupeDetector(sigs.key.verifier)
	se := ociremote.SignedUnknown(d, oopts...)
	var err error
	for _, sig := range s.Signatures {
		if se, err = mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(dd)); err != nil {
			return fmt.Errorf("attaching signature to %s: %w", d, err)
		}
	}
	return writeSignaturesImage(ctx, tag, se.Signatures, s.Signatures, rec, want, aw, ropts)
}

// writeLegacyAttestations puts one subject's cosign v2 attestations at its
// .att tag, replacing the signer's earlier ones of the same predicate
// types, unless they are there.
func writeLegacyAttestations(ctx context.Context, repo name.Repository, sigs *Signatures, s Subject, rec *Record, aw *artifactWriter, ropts []remote.Option) error {
	if len(s.Attestations) == 0 {
		return nil
	}
	tag := AttestationTag(repo, s.Digest)
	want := make([]string, 0, len(s.Attestations))
	for _, att := range s.Attestations {
		st, err := statementBytes(att)
		if err != nil {
			return fmt.Errorf("attestation of %s: %w", s.Digest, err)
		}
		want = append(want, held(sigs.key.ID(), st))
	}
	if rec.confirmed(tag, want, ropts) {
		return nil
	}
	oopts := []ociremote.Option{ociremote.WithRemoteOptions(ropts...)}
	d := repo.Digest(s.Digest.String())
	se := ociremote.SignedUnknown(d, oopts...)
	current, err := se.Attestations()
	if err != nil {
		return fmt.Errorf("reading attestations of %s: %w", d, err)
	}
	existing, err := current.Get()
	if err != nil {
		return fmt.Errorf("reading attestations of %s: %w", d, err)
	}
	added := 0
	for _, att := range s.Attestations {
		if sameStatementSigned(ctx, existing, att, sigs.key.verifier) {
			// Already attested by this key, word for word: leave it,
			// so an unchanged rerun writes nothing.
			continue
		}
		added++
		pt, err := attestationPredicateType(att)
		if err != nil {
			return fmt.Errorf("attaching attestation to %s: %w", d, err)
		}
		ro := &replaceOwn{ctx: ctx, predicateType: pt, verifier: sigs.key.verifier}
		if se, err = mutate.AttachAttestationToEntity(se, att, mutate.WithReplaceOp(ro)); err != nil {
			return fmt.Errorf("attaching attestation to %s: %w", d, err)
		}
	}
	if added == 0 {
		// Everything is there: record what the tag names.
		h, err := current.Digest()
		if err != nil {
			return fmt.Errorf("reading attestations of %s: %w", d, err)
		}
		return rec.remember(tag, h, want)
	}
	return writeSignaturesImage(ctx, tag, se.Attestations, s.Attestations, rec, want, aw, ropts)
}

// writeSignaturesImage writes the signatures image made by get (the tag's
// current one with ours merged in) to tag, as cosign's WriteSignatures and
// WriteAttestations do, and records its digest. get is called once: on a
// remote entity each call reads the tag again. With aw, the config and
// the layers of ours (just made) are uploaded without asking; the others
// (other signers', already there) are each checked with a HEAD.
func writeSignaturesImage(ctx context.Context, tag name.Tag, get func() (oci.Signatures, error), ours []oci.Signature, rec *Record, holds []string, aw *artifactWriter, ropts []remote.Option) error {
	img, err := get()
	if err != nil {
		return fmt.Errorf("writing %s: %w", tag, err)
	}
	h, err := img.Digest()
	if err != nil {
		return fmt.Errorf("writing %s: %w", tag, err)
	}
	if aw != nil {
		// What go-containerregistry asks before a tag's PUT: a merge
		// that added nothing (same signer, same payload) writes nothing.
		if desc, herr := remote.Head(tag, ropts...); herr == nil && desc.Digest == h {
			return rec.remember(tag, h, holds)
		}
		fresh := map[v1.Hash]bool{}
		if cd, err := img.ConfigName(); err == nil {
			fresh[cd] = true
		}
		for _, o := range ours {
			if d, err := o.Digest(); err == nil {
				fresh[d] = true
			}
		}
		err = aw.writeImage(ctx, tag, img, func(h v1.Hash) blobState {
			if fresh[h] {
				return blobFresh
			}
			return blobUnknown
		})
	} else if err = remote.Write(tag, img, ropts...); err != nil {
		err = fmt.Errorf("writing %s: %w", tag, err)
	}
	if err != nil {
		return err
	}
	return rec.remember(tag, h, holds)
}

// sameStatementSigned reports whether existing holds an attestation, signed
// by verifier's key, of exactly the statement att carries.
func sameStatementSigned(ctx context.Context, existing []oci.Signature, att oci.Signature, verifier signature.Verifier) bool {
	want, err := statementBytes(att)
	if err != nil {
		return false
	}
	ro := &replaceOwn{ctx: ctx, verifier: verifier}
	for _, e := range existing {
		got, err := statementBytes(e)
		if err != nil || !bytes.Equal(got, want) {
			continue
		}
		pt, err := attestationPredicateType(e)
		if err != nil {
			continue
		}
		ro.predicateType = pt
		if ro.ours(e) {
			return true
		}
	}
	return false
}

// replaceOwn is a mutate.ReplaceOp: it drops existing attestations of one
// predicate type that verify with the signer's key, then appends the new one.
// Unlike cosign's own ReplaceOp, attestations by other keys are kept.
type replaceOwn struct {
	ctx           context.Context
	predicateType string
	verifier      signature.Verifier
}

var _ mutate.ReplaceOp = (*replaceOwn)(nil)

// Replace implements mutate.ReplaceOp.
func (r *replaceOwn) Replace(base oci.Signatures, o oci.Signature) (oci.Signatures, error) {
	existing, err := base.Get()
	if err != nil {
		return nil, err
	}
	keep := make([]oci.Signature, 0, len(existing)+1)
	for _, s := range existing {
		if r.ours(s) {
			continue
		}
		keep = append(keep, s)
	}
	return &signatureList{Signatures: base, sigs: append(keep, o)}, nil
}

// ours reports whether s is an attestation of r.predicateType signed by r's key.
func (r *replaceOwn) ours(s oci.Signature) bool {
	p, err := s.Payload()
	if err != nil {
		return false
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(p, &env); err != nil {
		return false
	}
	ev, err := ssldsse.NewEnvelopeVerifier(&sdsse.VerifierAdapter{SignatureVerifier: r.verifier})
	if err != nil {
		return false
	}
	if _, err := ev.Verify(r.ctx, &env); err != nil {
		return false
	}
	st, err := decodeEnvelopeStatement(p)
	return err == nil && st.PredicateType == r.predicateType
}

// signatureList is an oci.Signatures whose Get returns a fixed list.
type signatureList struct {
	oci.Signatures
	sigs []oci.Signature
}

// Get implements oci.Signatures.
func (l *signatureList) Get() ([]oci.Signature, error) { return l.sigs, nil }
