package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	openvex "github.com/openvex/go-vex/pkg/vex"
)

const vexText = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://x.example/vex/1","author":"a","timestamp":"2026-01-01T00:00:00Z","version":1,
"statements":[{"vulnerability":{"name":"CVE-2022-32149"},"products":[{"@id":"pkg:golang/golang.org/x/text@v0.3.7"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`

const vexNet = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://x.example/vex/2","author":"b","timestamp":"2026-02-01T00:00:00Z","version":1,
"statements":[{"vulnerability":{"name":"CVE-2023-0001"},"products":[{"@id":"pkg:golang/golang.org/x/net@v0.1.0"}],"status":"fixed"}]}`

const csafDoc = `{"document":{"category":"csaf_vex","csaf_version":"2.0"},"vulnerabilities":[{"cve":"CVE-2022-32149"}]}`

func TestOpenVEXDocuments(t *testing.T) {
	one, err := OpenVEX(VEXDocument{Name: "a.json", Data: []byte(vexText)})
	if err != nil || string(one) != vexText {
		t.Fatalf("one document: %v, want it unchanged", err)
	}
	merged, err := OpenVEX(VEXDocument{Name: "a.json", Data: []byte(vexText)}, VEXDocument{Name: "b.json", Data: []byte(vexNet)})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := OpenVEX(VEXDocument{Name: "a.json", Data: []byte(vexText)}, VEXDocument{Name: "b.json", Data: []byte(vexNet)})
	if !bytes.Equal(merged, again) {
		t.Errorf("merging is not deterministic:\n%s\n%s", merged, again)
	}
	doc, err := openvex.Parse(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Statements) != 2 || doc.Timestamp == nil || doc.Timestamp.Format("2006-01-02") != "2026-02-01" ||
		len(doc.Matches("CVE-2022-32149", "pkg:golang/golang.org/x/text@v0.3.7", nil)) != 1 {
		t.Errorf("merged document: %s", merged)
	}
	var nov *NotOpenVEXError
	if _, err := OpenVEX(VEXDocument{Name: "a.json", Data: []byte(vexText)}, VEXDocument{Name: "c.csaf.json", Data: []byte(csafDoc)}); !errors.As(err, &nov) || nov.Name != "c.csaf.json" {
		t.Errorf("CSAF: %v, want a NotOpenVEXError naming it", err)
	}
	if _, err := OpenVEX(VEXDocument{Name: "cut.json", Data: []byte(vexText[:40])}); err == nil || !strings.Contains(err.Error(), "cut.json") {
		t.Errorf("truncated: %v, want an error naming it", err)
	}
}

// TestOpenVEXStatement: the openvex attestation is an in-toto statement
// about the index whose predicate type is OpenVEX's and whose predicate
// decodes as the document, as Trivy's --vex oci decodes it.
func TestOpenVEXStatement(t *testing.T) {
	s, err := NewKeyed(testKey(t, "cosign"))
	if err != nil {
		t.Fatal(err)
	}
	repo := mustRepo(t, "registry.example/app")
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	sts, err := s.statements(repo, h, &signRequest{openvex: []byte(vexText)})
	if err != nil || len(sts) != 1 || sts[0].predicateType != PredicateOpenVEX || KindOf(PredicateOpenVEX) != "openvex" {
		t.Fatalf("statements = %+v, %v", sts, err)
	}
	var st struct {
		PredicateType string      `json:"predicateType"`
		Subject       []any       `json:"subject"`
		Predicate     openvex.VEX `json:"predicate"`
	}
	if err := json.Unmarshal(sts[0].body, &st); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != "https://openvex.dev/ns" || len(st.Subject) != 1 ||
		len(st.Predicate.Matches("CVE-2022-32149", "pkg:golang/golang.org/x/text@v0.3.7", nil)) != 1 {
		t.Errorf("statement %s", sts[0].body)
	}
	if _, err := s.Sign(context.Background(), testIndex(t), repo, WithOpenVEX([]byte(csafDoc))); err == nil || !strings.Contains(err.Error(), "openvex") {
		t.Errorf("Sign with a CSAF document as openvex = %v, want an error", err)
	}
}
