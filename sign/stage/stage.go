package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/vocab"
)

// LocalRegistry is the registry named in signed payloads when the image is
// written to a layout and no repository is configured.
const LocalRegistry = "slipway.local"

// SBOMMaker makes an SBOM document of an index in a format it names
// (scan/trivy's Scanner is one).
type SBOMMaker interface {
	SBOM(ctx context.Context, idx v1.ImageIndex, format string) ([]byte, error)
}

// Signer is the signing stage: signatures over the index and every
// platform manifest, and the configured attestations.
type Signer struct {
	keyed *sign.Signer
	o     options
}

var _ pipeline.Signer = (*Signer)(nil)

// Option configures a Signer.
type Option func(*options)

type options struct {
	attest      map[string]bool
	sboms       SBOMMaker
	sbomFormat  string
	sbomCache   string
	sbomVersion string
	repository  string
	targets     []pipeline.Target
	version     string
	ropts       []remote.Option
	record      *sign.Record
	log         *slog.Logger
	root        string // see WithSourceRoot
	configDir   string
	openvex     []byte
}

// WithAttestations adds attestations by kind (vocab.KindVuln, KindSBOM,
// KindProvenance, KindOpenVEX). Default: none, signatures only.
func WithAttestations(kinds ...string) Option {
	return func(o *options) {
		for _, k := range kinds {
			o.attest[k] = true
		}
	}
}

// WithSBOMs makes the SBOM attestation's document with m in format (one of
// vocab.SBOMFormats). Required with the sbom attestation.
func WithSBOMs(m SBOMMaker, format string) Option {
	return func(o *options) { o.sboms, o.sbomFormat = m, format }
}

// WithSBOMCache keeps made SBOMs in dir (created private), keyed by index
// digest, format and makerVersion (the SBOM tool's version): SBOMs carry a
// creation time and a random namespace, and an unchanged image should keep
// its attestation. Default: no cache, a new SBOM every run.
func WithSBOMCache(dir, makerVersion string) Option {
	return func(o *options) { o.sbomCache, o.sbomVersion = dir, makerVersion }
}

// WithRepository is the repository prefix named in signed payloads for a
// job written to a layout (<prefix>/<target>). Default: LocalRegistry.
func WithRepository(prefix string) Option {
	return func(o *options) { o.repository = prefix }
}

// WithTargets are the targets as configured, recorded in provenance as
// its external parameters (environment values left out). Default: none.
func WithTargets(ts []pipeline.Target) Option {
	return func(o *options) { o.targets = ts }
}

// WithSourceRoot makes the local paths recorded in provenance (the
// target's dir, main, files, an oci: base) and in the vuln attestation
// (the ignore file or VEX document of a suppression) relative to root, slash-separated
// (see pipeline.SourceRoot: the git top level, or the config file's
// directory); configDir is the directory the config's relative paths are
// relative to. Default: root is the git top level of each target's
// directory, else that directory; absolute paths are made relative to
// it, and relative ones are recorded as written (relative to the config
// file).
func WithSourceRoot(root, configDir string) Option {
	return func(o *options) { o.root, o.configDir = root, configDir }
}

// WithBuilderVersion is slipway's version, in provenance's builder id.
// Default: "devel".
func WithBuilderVersion(v string) Option {
	return func(o *options) { o.version = v }
}

// WithRemoteOptions are used to write signatures to a registry. Default:
// none.
func WithRemoteOptions(ropts ...remote.Option) Option {
	return func(o *options) { o.ropts = ropts }
}

// WithRecord keeps what was written to registries in rec (see
// sign.Record), so unchanged reruns confirm signatures with HEADs.
// Default: none, signatures are read back to be compared.
func WithRecord(rec *sign.Record) Option {
	return func(o *options) { o.record = rec }
}

// WithLogger receives progress. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// New makes the signing stage signing as cfg says (a key, or keyless).
func New(cfg sign.SignerConfig, opts ...Option) (*Signer, error) {
	o := options{attest: map[string]bool{}, repository: LocalRegistry, version: "devel",
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	for k := range o.attest {
		if !slices.Contains(vocab.AttestationKinds(), k) {
			return nil, fmt.Errorf("unknown attestation %q (want one of %s)", k, strings.Join(vocab.AttestationKinds(), ", "))
		}
	}
	if o.attest[vocab.KindOpenVEX] && len(o.openvex) == 0 {
		return nil, errors.New("the openvex attestation needs an OpenVEX document")
	}
	if o.attest[vocab.KindSBOM] {
		if o.sboms == nil {
			return nil, errors.New("the sbom attestation needs an SBOM maker")
		}
		if !slices.Contains(vocab.SBOMFormats(), o.sbomFormat) {
			return nil, fmt.Errorf("unknown SBOM format %q (want one of %s)", o.sbomFormat, strings.Join(vocab.SBOMFormats(), ", "))
		}
	}
	if o.repository == "" {
		o.repository = LocalRegistry
	}
	keyed, err := sign.NewSigner(cfg, sign.WithLogger(o.log))
	if err != nil {
		return nil, err
	}
	return &Signer{keyed: keyed, o: o}, nil
}

// repo is the repository named in signed payloads: the job's, or for
// layout output the configured repository, else slipway.local.
func (s *Signer) repo(j pipeline.Job) (name.Repository, error) {
	if j.Repository.RepositoryStr() != "" {
		return j.Repository, nil
	}
	return name.NewRepository(strings.TrimSuffix(s.o.repository, "/") + "/" + j.Target.Name)
}

// Sign implements pipeline.Signer.
func (s *Signer) Sign(ctx context.Context, j pipeline.Job, res *build.Result, report *scan.Report) (pipeline.Signatures, error) {
	repo, err := s.repo(j)
	if err != nil {
		return nil, err
	}
	opts := []sign.SignOption{sign.WithAnnotations(j.SignAnnotations)}
	if s.o.attest[vocab.KindVuln] {
		if report == nil {
			return nil, errors.New("the vuln attestation needs a scan (enable the scan)")
		}
		opts = append(opts, sign.WithVulnReport(s.paths(j).report(report)))
	}
	if s.o.attest[vocab.KindSBOM] {
		doc, err := s.sbom(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("making SBOM: %w", err)
		}
		opts = append(opts, sign.WithSBOM(sign.SBOM{Format: s.o.sbomFormat, Document: doc}))
	}
	if s.o.attest[vocab.KindProvenance] {
		p, err := s.provenance(j, res)
		if err != nil {
			return nil, fmt.Errorf("making provenance: %w", err)
		}
		opts = append(opts, sign.WithProvenance(p))
	}
	if s.o.attest[vocab.KindOpenVEX] {
		opts = append(opts, sign.WithOpenVEX(s.o.openvex))
	}
	sigs, err := s.keyed.Sign(ctx, res.Index, repo, opts...)
	if err != nil {
		return nil, err
	}
	return &Signatures{sigs: sigs, ropts: s.o.ropts, record: s.o.record}, nil
}
