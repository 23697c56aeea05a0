package sign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	ita1 "github.com/in-toto/attestation/go/v1"
	cattest "github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/slipway-build/slipway/sign/vocab"
)

// Predicate types of the attestations slipway writes and checks.
const (
	// PredicateSPDX is an SPDX JSON document.
	PredicateSPDX = "https://spdx.dev/Document"
	// PredicateCycloneDX is a CycloneDX JSON BOM.
	PredicateCycloneDX = "https://cyclonedx.org/bom"
	// PredicateVuln is cosign's vulnerability scan predicate.
	PredicateVuln = cattest.CosignVulnProvenanceV01
	// PredicateProvenance is SLSA provenance v1.
	PredicateProvenance = "https://slsa.dev/provenance/v1"
)

// predicateKinds maps each predicate type slipway understands to its kind.
var predicateKinds = map[string]string{
	PredicateSPDX:       vocab.KindSBOM,
	PredicateCycloneDX:  vocab.KindSBOM,
	PredicateVuln:       vocab.KindVuln,
	PredicateProvenance: vocab.KindProvenance,
	PredicateOpenVEX:    vocab.KindOpenVEX,
}

// KindOf returns the kind (sbom, vuln, provenance, openvex) of a predicate type, or ""
// for a type slipway does not know.
func KindOf(predicateType string) string { return predicateKinds[predicateType] }

// intotoPayloadType is the DSSE payload type of in-toto statements.
const intotoPayloadType = "application/vnd.in-toto+json"

// SBOM is an SBOM document to attest, produced by the caller.
type SBOM struct {
	// Format (vocab.SBOMSPDXJSON or vocab.SBOMCycloneDX) says which
	// predicate type the document is attested as.
	Format string
	// Document is the JSON document, embedded unchanged as the predicate.
	Document []byte
}

// Provenance is the input of the SLSA provenance v1 attestation.
type Provenance struct {
	// BuilderID identifies the builder (runDetails.builder.id), e.g.
	// "https://github.com/slipway-build/slipway@v1.2.0". Required.
	BuilderID string
	// BuilderVersion lists versions of builder components (optional).
	BuilderVersion map[string]string
	// BuildType is the URI of the build type. Required.
	BuildType string
	// ExternalParameters is the build configuration as the user gave it; it
	// must marshal to a non-empty JSON object. Required.
	ExternalParameters any
	// Source is the source tree the build used, if known.
	Source *Source
	// BaseImages are the resolved base images (one per platform, or the
	// base index), recorded as resolved dependencies named BaseImageDependency.
	BaseImages []BaseImage
	// GoVersion, LDFlags, BuildFlags (the other go build flags, as
	// "-name=value") and Timings are recorded as internal parameters.
	GoVersion  string
	LDFlags    string
	BuildFlags []string
	Timings    map[string]time.Duration
	// InvocationID identifies this build run (optional).
	InvocationID string
	// StartedOn and FinishedOn bound the build (optional).
	StartedOn, FinishedOn time.Time
}

// Source identifies the source tree of a build.
type Source struct {
	// URI locates the repository, e.g. "git+https://github.com/org/repo".
	URI string
	// Commit is the git commit hash.
	Commit string
	// Dirty reports uncommitted changes in the tree at build time.
	Dirty bool
}

// BaseImage is a resolved base image.
type BaseImage struct {
	// Ref is the reference the user configured (e.g. "cgr.dev/x/static:latest").
	Ref string
	// Digest is the digest it resolved to.
	Digest v1.Hash
	// Platform is "os/arch[/variant]" for a platform manifest, empty for an index.
	Platform string
}

// Names of resolved dependencies in slipway's provenance.
const (
	// BaseImageDependency names base image entries.
	BaseImageDependency = "base-image"
	// SourceDependency names the source tree entry.
	SourceDependency = "source"
)

// statement builds the JSON of an in-toto v1 statement about subject.
func statement(subjectName string, subject v1.Hash, predicateType string, predicate *structpb.Struct) ([]byte, error) {
	st := &ita1.Statement{
		Type: ita1.StatementTypeUri,
		Subject: []*ita1.ResourceDescriptor{{
			Name:   subjectName,
			Digest: map[string]string{subject.Algorithm: subject.Hex},
		}},
		PredicateType: predicateType,
		Predicate:     predicate,
	}
	return marshalStatement(st)
}

// marshalStatement validates st and serialises it compactly (the same
// statement always has the same bytes).
func marshalStatement(st *ita1.Statement) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("invalid statement: %w", err)
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding statement: %w", err)
	}
	// protojson deliberately varies its whitespace; compact it so the same
	// statement always has the same bytes.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("compacting statement: %w", err)
	}
	return buf.Bytes(), nil
}

// toStruct converts a JSON object to a protobuf Struct.
func toStruct(doc []byte) (*structpb.Struct, error) {
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(doc, s); err != nil {
		return nil, err
	}
	return s, nil
}

// jsonStruct marshals v with encoding/json and converts it to a Struct.
func jsonStruct(v any) (*structpb.Struct, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return toStruct(b)
}

// sbomPredicate validates an SBOM and returns its predicate type and body.
func sbomPredicate(s *SBOM) (string, *structpb.Struct, error) {
	var probe struct {
		SPDXVersion string `json:"spdxVersion"`
		BOMFormat   string `json:"bomFormat"`
	}
	if err := json.Unmarshal(s.Document, &probe); err != nil {
		return "", nil, fmt.Errorf("sbom: not a JSON object: %w", err)
	}
	var pt string
	switch s.Format {
	case vocab.SBOMSPDXJSON:
		if !strings.HasPrefix(probe.SPDXVersion, "SPDX-") {
			return "", nil, errors.New("sbom: spdx-json document has no spdxVersion")
		}
		pt = PredicateSPDX
	case vocab.SBOMCycloneDX:
		if probe.BOMFormat != "CycloneDX" {
			return "", nil, errors.New(`sbom: cyclonedx document has no "bomFormat": "CycloneDX"`)
		}
		pt = PredicateCycloneDX
	default:
		return "", nil, fmt.Errorf("sbom: unknown format %q (want %s or %s)", s.Format, vocab.SBOMSPDXJSON, vocab.SBOMCycloneDX)
	}
	st, err := toStruct(s.Document)
	if err != nil {
		return "", nil, fmt.Errorf("sbom: %w", err)
	}
	return pt, st, nil
}

// provenancePredicate builds a SLSA provenance v1 predicate.
func provenancePredicate(p *Provenance) (*structpb.Struct, error) {
	if p.BuilderID == "" {
		return nil, errors.New("provenance: builder id is required")
	}
	if p.BuildType == "" {
		return nil, errors.New("provenance: build type is required")
	}
	ext, err := jsonStruct(p.ExternalParameters)
	if err != nil {
		return nil, fmt.Errorf("provenance: external parameters must be a JSON object: %w", err)
	}
	internal := map[string]any{}
	if p.GoVersion != "" {
		internal["goVersion"] = p.GoVersion
	}
	if p.LDFlags != "" {
		internal["ldflags"] = p.LDFlags
	}
	if len(p.BuildFlags) > 0 {
		flags := make([]any, len(p.BuildFlags))
		for i, f := range p.BuildFlags {
			flags[i] = f
		}
		internal["buildFlags"] = flags
	}
	if p.Source != nil {
		internal["dirty"] = p.Source.Dirty
	}
	if len(p.Timings) > 0 {
		t := map[string]any{}
		for _, k := range slices.Sorted(maps.Keys(p.Timings)) {
			t[k] = p.Timings[k].String()
		}
		internal["timings"] = t
	}
	intl, err := structpb.NewStruct(internal)
	if err != nil {
		return nil, fmt.Errorf("provenance: internal parameters: %w", err)
	}
	var deps []*ita1.ResourceDescriptor
	if p.Source != nil && p.Source.Commit != "" {
		deps = append(deps, &ita1.ResourceDescriptor{
			Name:   SourceDependency,
			Uri:    p.Source.URI,
			Digest: map[string]string{"gitCommit": p.Source.Commit},
		})
	}
	for _, b := range p.BaseImages {
		if b.Digest.Hex == "" {
			return nil, fmt.Errorf("provenance: base image %q has no digest", b.Ref)
		}
		rd := &ita1.ResourceDescriptor{
			Name:   BaseImageDependency,
			Uri:    b.Ref,
			Digest: map[string]string{b.Digest.Algorithm: b.Digest.Hex},
		}
		if b.Platform != "" {
			rd.Annotations, err = structpb.NewStruct(map[string]any{"platform": b.Platform})
			if err != nil {
				return nil, fmt.Errorf("provenance: %w", err)
			}
		}
		deps = append(deps, rd)
	}
	var md *slsa.BuildMetadata
	if p.InvocationID != "" || !p.StartedOn.IsZero() || !p.FinishedOn.IsZero() {
		md = &slsa.BuildMetadata{InvocationId: p.InvocationID}
		if !p.StartedOn.IsZero() {
			md.StartedOn = timestamppb.New(p.StartedOn)
		}
		if !p.FinishedOn.IsZero() {
			md.FinishedOn = timestamppb.New(p.FinishedOn)
		}
	}
	prov := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType:            p.BuildType,
			ExternalParameters:   ext,
			InternalParameters:   intl,
			ResolvedDependencies: deps,
		},
		RunDetails: &slsa.RunDetails{
			Builder:  &slsa.Builder{Id: p.BuilderID, Version: p.BuilderVersion},
			Metadata: md,
		},
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	b, err := protojson.Marshal(prov)
	if err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	return toStruct(b)
}
