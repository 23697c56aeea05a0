package sign

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	openvex "github.com/openvex/go-vex/pkg/vex"
	"google.golang.org/protobuf/types/known/structpb"
)

// PredicateOpenVEX is the predicate type of an OpenVEX attestation, as
// `cosign attest --type openvex` writes it and Trivy's --vex oci reads it
// (any "https://openvex.dev/ns" or "https://openvex.dev/ns/…").
const PredicateOpenVEX = openvex.TypeURI

// VEXDocument is a VEX document as configured (scan.vex).
type VEXDocument struct {
	// Name says where it came from (the file), for messages.
	Name string
	// Data is the document.
	Data []byte
}

// NotOpenVEXError is returned by OpenVEX for a document that is not
// OpenVEX (CSAF or CycloneDX VEX): only OpenVEX is attached, since it is
// the only format Trivy's --vex oci reads from an attestation.
type NotOpenVEXError struct {
	// Name is the document's.
	Name string
}

// Error names the document.
func (e *NotOpenVEXError) Error() string {
	return fmt.Sprintf("%s is not an OpenVEX document: the openvex attestation holds OpenVEX only (what Trivy's --vex oci reads); attach CSAF or CycloneDX VEX another way, or convert it to OpenVEX", e.Name)
}

// OpenVEX returns the one OpenVEX document to attest for docs: the
// document itself when there is one, else their statements merged into
// one document (Trivy's --vex oci reads only the first OpenVEX attestation
// it finds), with a deterministic id and the latest of their timestamps,
// so the same inputs give the same bytes. A document that is not OpenVEX
// is a *NotOpenVEXError; one that does not decode is an error naming it.
func OpenVEX(docs ...VEXDocument) ([]byte, error) {
	if len(docs) == 0 {
		return nil, errors.New("openvex: no documents")
	}
	parsed := make([]*openvex.VEX, 0, len(docs))
	var latest *time.Time
	for _, d := range docs {
		var probe struct {
			Context string `json:"@context"`
		}
		if err := json.Unmarshal(d.Data, &probe); err != nil {
			return nil, fmt.Errorf("openvex: %s: %w", d.Name, err)
		}
		if probe.Context != openvex.Context && !strings.HasPrefix(probe.Context, openvex.Context+"/") {
			return nil, &NotOpenVEXError{Name: d.Name}
		}
		v, err := openvex.Parse(d.Data)
		if err != nil {
			return nil, fmt.Errorf("openvex: %s: %w", d.Name, err)
		}
		if v.Timestamp != nil && (latest == nil || v.Timestamp.After(*latest)) {
			latest = v.Timestamp
		}
		parsed = append(parsed, v)
	}
	if len(docs) == 1 {
		return docs[0].Data, nil
	}
	merged, err := openvex.MergeDocuments(parsed)
	if err != nil {
		return nil, fmt.Errorf("openvex: merging %d documents: %w", len(docs), err)
	}
	merged.Timestamp = latest // New() stamped it with the clock
	merged.LastUpdated = nil
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("openvex: encoding the merged document: %w", err)
	}
	return b, nil
}

// openVEXPredicate checks that doc is an OpenVEX document and returns it
// as a predicate body, unchanged.
func openVEXPredicate(doc []byte) (*structpb.Struct, error) {
	var probe struct {
		Context    string            `json:"@context"`
		Statements []json.RawMessage `json:"statements"`
	}
	if err := json.Unmarshal(doc, &probe); err != nil {
		return nil, fmt.Errorf("openvex: not a JSON object: %w", err)
	}
	if probe.Context != openvex.Context && !strings.HasPrefix(probe.Context, openvex.Context+"/") {
		return nil, fmt.Errorf(`openvex: "@context" is %q, not %s`, probe.Context, openvex.Context)
	}
	st, err := toStruct(doc)
	if err != nil {
		return nil, fmt.Errorf("openvex: %w", err)
	}
	return st, nil
}

// WithOpenVEX attests an OpenVEX document about the index (see OpenVEX),
// with predicate type PredicateOpenVEX. Default: none.
func WithOpenVEX(doc []byte) SignOption {
	return func(r *signRequest) { r.openvex = doc }
}
