package sign

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
)

// intotoStatement is the part of an in-toto statement (v0.1 or v1) slipway
// reads.
type intotoStatement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// decodeEnvelopeStatement decodes the in-toto statement inside a DSSE
// envelope. It does not verify the envelope.
func decodeEnvelopeStatement(envelope []byte) (*intotoStatement, error) {
	var env ssldsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("decoding envelope: %w", err)
	}
	if env.PayloadType != ctypes.IntotoPayloadType {
		return nil, fmt.Errorf("envelope payload type %q is not in-toto", env.PayloadType)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("decoding envelope payload: %w", err)
	}
	var st intotoStatement
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decoding statement: %w", err)
	}
	if st.PredicateType == "" {
		return nil, errors.New("statement has no predicate type")
	}
	return &st, nil
}

// statementBytes is the in-toto statement inside a DSSE attestation.
func statementBytes(att oci.Signature) ([]byte, error) {
	p, err := att.Payload()
	if err != nil {
		return nil, err
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(p, &env); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(env.Payload)
}

// attestationPredicateType reads the predicate type from a DSSE attestation's
// statement (not from the unsigned layer annotation).
func attestationPredicateType(att oci.Signature) (string, error) {
	p, err := att.Payload()
	if err != nil {
		return "", err
	}
	st, err := decodeEnvelopeStatement(p)
	if err != nil {
		return "", err
	}
	return st.PredicateType, nil
}
