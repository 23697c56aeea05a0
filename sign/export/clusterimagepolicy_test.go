package export

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign/rego"
	"github.com/sigstore/sigstore-go/pkg/root"
	"go.yaml.in/yaml/v3"

	"github.com/slipway-build/slipway/sign"
)

// testKeyPEM is a fresh ECDSA P-256 public key in PEM.
func testKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// testCert is a self-signed CA certificate named cn.
func testCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"slipway-test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testRoot is a trusted_root.json with one Fulcio CA and one TSA, plus a
// Rekor log when withLog, and validity ends when ended.
func testRoot(t *testing.T, withLog, ended bool) []byte {
	t.Helper()
	var end time.Time
	if ended {
		end = time.Now().Add(time.Hour)
	}
	ca := &root.FulcioCertificateAuthority{Root: testCert(t, "fulcio"), URI: "https://fulcio.test", ValidityPeriodStart: time.Now().Add(-time.Hour), ValidityPeriodEnd: end}
	tsa := &root.SigstoreTimestampingAuthority{Root: testCert(t, "tsa"), URI: "https://tsa.test", ValidityPeriodStart: time.Now().Add(-time.Hour)}
	logs := map[string]*root.TransparencyLog{}
	if withLog {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		logs["01"] = &root.TransparencyLog{BaseURL: "https://rekor.test", ID: []byte{1}, ValidityPeriodStart: time.Now().Add(-time.Hour),
			HashFunc: crypto.SHA256, PublicKey: &k.PublicKey, SignatureHashFunc: crypto.SHA256}
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca}, nil, []root.TimestampingAuthority{tsa}, logs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// docs decodes the exported YAML documents.
func docs(t *testing.T, y []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(y))
	var out []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			break
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		t.Fatalf("no YAML documents in:\n%s", y)
	}
	return out
}

// exportCIP exports p for "**" and decodes the ClusterImagePolicy (the
// last document).
func exportCIP(t *testing.T, p Policy) (cipDoc, []map[string]any) {
	t.Helper()
	r, err := ClusterImagePolicy(p, Options{Images: []string{"**"}})
	if err != nil {
		t.Fatal(err)
	}
	ds := docs(t, r.YAML)
	dec := yaml.NewDecoder(bytes.NewReader(r.YAML))
	var cip cipDoc
	for range ds {
		cip = cipDoc{}
		if err := dec.Decode(&cip); err != nil {
			t.Fatal(err)
		}
	}
	if cip.Kind != "ClusterImagePolicy" {
		t.Fatalf("the last document is a %s", cip.Kind)
	}
	return cip, ds
}

func authorityNames(c cipDoc) []string {
	var out []string
	for _, a := range c.Spec.Authorities {
		out = append(out, a.Name)
	}
	return out
}

func findAuthority(t *testing.T, c cipDoc, name string) authority {
	t.Helper()
	for _, a := range c.Spec.Authorities {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no authority %s in %v", name, authorityNames(c))
	return authority{}
}

func TestClusterImagePolicyLayout(t *testing.T) {
	pem1 := testKeyPEM(t)
	p := Policy{
		Keys:                []Key{{PEM: pem1, Ref: "cosign.pub"}},
		Identities:          []Identity{{Issuer: "https://issuer.test", SubjectRegexp: "^.*@example\\.com$"}},
		TrustedRoot:         testRoot(t, false, false),
		RequireTimestamp:    false,
		Threshold:           2,
		RequireAttestations: []string{"sbom"},
		MaxSeverity:         "high",
		RequireNonRoot:      true,
	}
	// Keys with neither tlog nor timestamp required; the identity's
	// time source is the root's TSA (it has no log).
	cip, ds := exportCIP(t, p)
	if len(ds) != 2 || ds[0]["kind"] != "TrustRoot" || ds[1]["kind"] != "ClusterImagePolicy" {
		t.Fatalf("want a TrustRoot then a ClusterImagePolicy, got %v", ds)
	}
	want := []string{"key-0", "key-0-spdx", "key-0-cyclonedx", "key-0-vuln", "key-0-vuln-ok",
		"id-0-tsa", "id-0-tsa-spdx", "id-0-tsa-cyclonedx", "id-0-tsa-vuln", "id-0-tsa-vuln-ok"}
	if got := authorityNames(cip); !slices.Equal(got, want) {
		t.Fatalf("authorities %v, want %v", got, want)
	}
	k := findAuthority(t, cip, "key-0")
	if k.Key == nil || k.Key.Data != pem1 || k.SignatureFormat != "" || len(k.Attestations) != 0 {
		t.Fatalf("key authority: %+v", k)
	}
	id := findAuthority(t, cip, "id-0-tsa")
	if id.SignatureFormat != "bundle" || id.Keyless == nil || id.Keyless.TrustRootRef != "slipway" || !id.Keyless.InsecureIgnoreSCT ||
		id.Keyless.URL != "https://fulcio.test" || id.RFC3161Timestamp == nil || id.RFC3161Timestamp.TrustRootRef != "slipway" ||
		len(id.Keyless.Identities) != 1 || id.Keyless.Identities[0].SubjectRegExp != "^.*@example\\.com$" ||
		len(id.Attestations) != 1 || id.Attestations[0].PredicateType != PredicateSign {
		t.Fatalf("keyless authority: %+v %+v", id, id.Keyless)
	}
	ok := findAuthority(t, cip, "key-0-vuln-ok")
	if len(ok.Attestations) != 1 || ok.Attestations[0].Name != "vuln-ok" || ok.Attestations[0].PredicateType != PredicateVuln ||
		ok.Attestations[0].Policy == nil || ok.Attestations[0].Policy.Type != "rego" {
		t.Fatalf("vuln-ok authority: %+v", ok)
	}
	if cip.Spec.Policy == nil || cip.Spec.Policy.Type != "rego" || !cip.Spec.Policy.FetchConfigFile {
		t.Fatalf("spec.policy: %+v", cip.Spec.Policy)
	}
	// The TrustRoot: base64 PEM chains, policy-controller's field names.
	tr := ds[0]["spec"].(map[string]any)["sigstoreKeys"].(map[string]any)
	for _, f := range []string{"certificateAuthorities", "timestampAuthorities"} {
		list, _ := tr[f].([]any)
		if len(list) != 1 {
			t.Fatalf("%s: %v", f, tr[f])
		}
		chain, err := base64.StdEncoding.DecodeString(list[0].(map[string]any)["certChain"].(string))
		if err != nil || !bytes.HasPrefix(chain, []byte("-----BEGIN CERTIFICATE-----")) {
			t.Fatalf("%s certChain is not base64 PEM: %v", f, err)
		}
	}
}

func TestClusterImagePolicyTimeSources(t *testing.T) {
	ids := []Identity{{Issuer: "https://issuer.test", Subject: "a@example.com"}}
	for _, c := range []struct {
		name           string
		tlog, ts, log  bool
		wantAuthoritys []string
	}{
		{"tsa only root", false, false, false, []string{"id-0-tsa"}},
		{"tsa and log: either", false, false, true, []string{"id-0-tsa", "id-0-tlog"}},
		{"require_timestamp", false, true, true, []string{"id-0-tsa"}},
		{"require_tlog", true, false, true, []string{"id-0-tlog"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cip, ds := exportCIP(t, Policy{Identities: ids, TrustedRoot: testRoot(t, c.log, false), RequireTlog: c.tlog, RequireTimestamp: c.ts})
			if got := authorityNames(cip); !slices.Equal(got, c.wantAuthoritys) {
				t.Fatalf("authorities %v, want %v", got, c.wantAuthoritys)
			}
			if tl := findAuthority(t, cip, c.wantAuthoritys[len(c.wantAuthoritys)-1]); strings.HasSuffix(tl.Name, "tlog") &&
				(tl.CTLog == nil || tl.CTLog.TrustRootRef != "slipway" || tl.RFC3161Timestamp != nil) {
				t.Fatalf("tlog authority: %+v", tl)
			}
			if c.log {
				tls, _ := ds[0]["spec"].(map[string]any)["sigstoreKeys"].(map[string]any)["tLogs"].([]any)
				if len(tls) != 1 || tls[0].(map[string]any)["hashAlgorithm"] != "sha256" {
					t.Fatalf("tLogs: %v", tls)
				}
			}
		})
	}
}

func TestClusterImagePolicyUnsupported(t *testing.T) {
	key := []Key{{PEM: testKeyPEM(t)}}
	ids := []Identity{{Issuer: "https://issuer.test", Subject: "a@example.com"}}
	for _, c := range []struct {
		name string
		p    Policy
		rule string
	}{
		{"keys under require_tlog", Policy{Keys: key, TrustedRoot: testRoot(t, true, false), RequireTlog: true}, "require_tlog"},
		{"keys under require_timestamp", Policy{Keys: key, TrustedRoot: testRoot(t, false, false), RequireTimestamp: true}, "require_timestamp"},
		{"identities requiring log and timestamp", Policy{Identities: ids, TrustedRoot: testRoot(t, true, false), RequireTlog: true, RequireTimestamp: true}, "require_tlog"},
		{"trusted root with validity ends", Policy{Identities: ids, TrustedRoot: testRoot(t, false, true)}, "trusted_root"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ClusterImagePolicy(c.p, Options{Images: []string{"**"}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) || ue.Rule != c.rule || ue.Target != TargetClusterImagePolicy {
				t.Fatalf("want an UnsupportedError for %s, got %v", c.rule, err)
			}
			if !strings.Contains(err.Error(), "policy."+c.rule) || !strings.Contains(err.Error(), TargetClusterImagePolicy) {
				t.Fatalf("error does not name the rule and the target: %v", err)
			}
			r, err := ClusterImagePolicy(c.p, Options{Images: []string{"**"}, AllowWeaker: true})
			if err != nil {
				t.Fatalf("allow weaker: %v", err)
			}
			if len(r.Dropped) != 1 || !strings.HasPrefix(r.Dropped[0], c.rule+": ") || len(r.YAML) == 0 {
				t.Fatalf("allow weaker: dropped %q", r.Dropped)
			}
		})
	}
}

func TestClusterImagePolicyInvalid(t *testing.T) {
	key := []Key{{PEM: testKeyPEM(t)}}
	for _, c := range []struct {
		name string
		p    Policy
		o    Options
	}{
		{"no signer", Policy{}, Options{Images: []string{"**"}}},
		{"no images", Policy{Keys: key}, Options{}},
		{"threshold above signers", Policy{Keys: key, Threshold: 2}, Options{Images: []string{"**"}}},
		{"threshold above distinct signers", Policy{Keys: append(key, key[0]), Threshold: 2}, Options{Images: []string{"**"}}},
		{"two keys in one", Policy{Keys: []Key{{PEM: key[0].PEM + key[0].PEM}}}, Options{Images: []string{"**"}}},
		{"bad severity", Policy{Keys: key, MaxSeverity: "SEVERE"}, Options{Images: []string{"**"}}},
		{"bad base digest", Policy{Keys: key, AllowedBaseDigests: []string{"sha256:abc"}}, Options{Images: []string{"**"}}},
		{"not a key", Policy{Keys: []Key{{PEM: "nope"}}}, Options{Images: []string{"**"}}},
		{"identities without a time source", Policy{Identities: []Identity{{Issuer: "i", Subject: "s"}}, RequireTimestamp: true}, Options{Images: []string{"**"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ClusterImagePolicy(c.p, c.o); err == nil {
				t.Fatal("exported an invalid policy")
			}
		})
	}
}

// evalRego evaluates a policy as policy-controller does (cosign's
// rego.ValidateJSONWithModuleInput: package sigstore, isCompliant) and
// reports whether it passed, failing the test if the module does not
// compile.
func evalRego(t *testing.T, module string, input any) (bool, string) {
	t.Helper()
	b, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rego.ValidateJSONWithModuleInput(b, module)
	if err != nil && (strings.Contains(err.Error(), "rego_parse_error") || strings.Contains(err.Error(), "rego_compile_error") || strings.Contains(err.Error(), "rego_type_error")) {
		t.Fatalf("policy does not compile: %v\n%s", err, module)
	}
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

// vulnStatement is an in-toto statement with slipway's vuln predicate.
func vulnStatement(finished time.Time, vulns []map[string]any, suppressed []map[string]any) map[string]any {
	results := []any{}
	if vulns != nil {
		results = append(results, map[string]any{"Target": "linux/amd64: app", "Vulnerabilities": vulns})
	}
	pred := map[string]any{
		"scanner":  map[string]any{"uri": "pkg:github/aquasecurity/trivy@0.74.0", "result": map[string]any{"Results": results}},
		"metadata": map[string]any{"scanStartedOn": finished.Add(-time.Second).UTC().Format(time.RFC3339Nano), "scanFinishedOn": finished.UTC().Format(time.RFC3339Nano)},
	}
	if suppressed != nil {
		pred["slipway"] = map[string]any{"suppressed": suppressed}
	}
	return map[string]any{"_type": "https://in-toto.io/Statement/v0.1", "predicateType": PredicateVuln, "predicate": pred}
}

func vuln(id, sev string) map[string]any {
	return map[string]any{"VulnerabilityID": id, "PkgName": "golang.org/x/text", "InstalledVersion": "v0.3.7", "Severity": sev}
}

func TestVulnOKRego(t *testing.T) {
	now := time.Now()
	high := []map[string]any{vuln("CVE-1", "HIGH")}
	for _, c := range []struct {
		name   string
		sev    string
		age    time.Duration
		st     map[string]any
		wantOK bool
	}{
		{"clean", "HIGH", 0, vulnStatement(now, nil, nil), true},
		{"medium under HIGH", "HIGH", 0, vulnStatement(now, []map[string]any{vuln("CVE-1", "medium")}, nil), true},
		{"HIGH under HIGH", "HIGH", 0, vulnStatement(now, high, nil), false},
		{"CRITICAL under HIGH", "high", 0, vulnStatement(now, []map[string]any{vuln("CVE-1", "CRITICAL")}, nil), false},
		{"HIGH under CRITICAL", "CRITICAL", 0, vulnStatement(now, high, nil), true},
		{"unknown severity under UNKNOWN", "UNKNOWN", 0, vulnStatement(now, []map[string]any{vuln("CVE-1", "weird")}, nil), false},
		{"no VulnerabilityID", "CRITICAL", 0, vulnStatement(now, []map[string]any{{"Severity": "LOW"}}, nil), false},
		{"not Trivy's report", "HIGH", 0, map[string]any{"predicateType": PredicateVuln, "predicate": map[string]any{"scanner": map[string]any{"result": map[string]any{}}}}, false},
		{"suppression in force", "HIGH", 0, vulnStatement(now, nil, []map[string]any{{"target": "t", "expiresAt": now.Add(time.Hour).UTC().Format(time.RFC3339), "vulnerability": vuln("CVE-2", "HIGH")}}), true},
		{"suppression without expiry", "HIGH", 0, vulnStatement(now, nil, []map[string]any{{"target": "t", "vulnerability": vuln("CVE-2", "HIGH")}}), true},
		{"suppression expired", "HIGH", 0, vulnStatement(now, nil, []map[string]any{{"target": "t", "expiresAt": now.Add(-time.Minute).UTC().Format(time.RFC3339), "vulnerability": vuln("CVE-2", "CRITICAL")}}), false},
		{"expired suppression below the limit", "HIGH", 0, vulnStatement(now, nil, []map[string]any{{"target": "t", "expiresAt": now.Add(-time.Minute).UTC().Format(time.RFC3339), "vulnerability": vuln("CVE-2", "LOW")}}), true},
		{"fresh", "", time.Hour, vulnStatement(now.Add(-30*time.Minute), high, nil), true},
		{"stale", "", time.Hour, vulnStatement(now.Add(-2*time.Hour), nil, nil), false},
		{"future", "", time.Hour, vulnStatement(now.Add(10*time.Minute), nil, nil), false},
		{"fresh but HIGH", "HIGH", time.Hour, vulnStatement(now, high, nil), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, msg := evalRego(t, vulnOKRego(c.sev, c.age), c.st)
			if ok != c.wantOK {
				t.Fatalf("vuln-ok passed=%v (%s), want %v", ok, msg, c.wantOK)
			}
		})
	}
	// vuln-recent counts every attestation not older than the maximum,
	// the unreadable ones too (they then fail vuln-ok).
	for _, c := range []struct {
		st     map[string]any
		wantOK bool
	}{
		{vulnStatement(now.Add(-30*time.Minute), high, nil), true},
		{vulnStatement(now.Add(-2*time.Hour), nil, nil), false},
		{vulnStatement(now.Add(time.Hour), nil, nil), true},
		{map[string]any{"predicate": map[string]any{"metadata": map[string]any{"scanFinishedOn": "yesterday"}}}, true},
	} {
		if ok, msg := evalRego(t, vulnRecentRego(time.Hour), c.st); ok != c.wantOK {
			t.Errorf("vuln-recent on %v passed=%v (%s), want %v", c.st["predicate"], ok, msg, c.wantOK)
		}
	}
}

func TestProvenanceRego(t *testing.T) {
	a := "sha256:" + strings.Repeat("a", 64)
	b := strings.Repeat("b", 64)
	allowed, err := provenanceAllowedRego([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	prov := func(deps ...map[string]any) map[string]any {
		return map[string]any{"predicateType": PredicateProvenance, "predicate": map[string]any{"buildDefinition": map[string]any{"resolvedDependencies": deps}}}
	}
	dep := func(name, hex string) map[string]any {
		return map[string]any{"name": name, "digest": map[string]any{"sha256": hex}}
	}
	for _, c := range []struct {
		name                  string
		st                    map[string]any
		wantBased, wantAllowd bool
	}{
		{"allowed base", prov(dep("base-image", strings.Repeat("a", 64)), dep("go", b)), true, true},
		{"other base", prov(dep("base-image", b)), true, false},
		{"allowed and other", prov(dep("base-image", strings.Repeat("a", 64)), dep("base-image", b)), true, false},
		{"base without sha256", prov(map[string]any{"name": "base-image", "digest": map[string]any{"sha512": "x"}}), true, false},
		{"no base", prov(dep("go", b)), false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if ok, msg := evalRego(t, provenanceBasedRego, c.st); ok != c.wantBased {
				t.Errorf("provenance-based passed=%v (%s), want %v", ok, msg, c.wantBased)
			}
			if ok, msg := evalRego(t, allowed, c.st); ok != c.wantAllowd {
				t.Errorf("provenance-allowed passed=%v (%s), want %v", ok, msg, c.wantAllowd)
			}
		})
	}
}

// match is an authorityMatches entry: attestations by name, n of each.
func match(n int, names ...string) map[string]any {
	atts := map[string]any{}
	for _, name := range names {
		var list []any
		for i := range n {
			list = append(list, map[string]any{"id": fmt.Sprint(i), "predicateType": "x"})
		}
		atts[name] = list
	}
	if len(names) == 0 {
		return map[string]any{"signatures": []any{map[string]any{"id": "sig"}}}
	}
	return map[string]any{"attestations": atts}
}

func TestSpecPolicyRego(t *testing.T) {
	k1, k2 := testKeyPEM(t), testKeyPEM(t)
	p := Policy{
		Keys:                []Key{{PEM: k1}, {PEM: k2}},
		Identities:          []Identity{{Issuer: "https://issuer.test", Subject: "a@example.com"}},
		TrustedRoot:         testRoot(t, true, false),
		Threshold:           2,
		RequireAttestations: []string{"sbom", "provenance"},
		MaxSeverity:         "HIGH",
		MaxScanAge:          time.Hour,
		AllowedBaseDigests:  []string{"sha256:" + strings.Repeat("a", 64)},
		RequireNonRoot:      true,
	}
	cip, _ := exportCIP(t, p)
	module := cip.Spec.Policy.Data
	nonRoot := map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "65532:65532"}}, "linux/arm64": map[string]any{"config": map[string]any{"User": "app"}}}
	// full is an input that meets every rule: key-0 and the identity
	// (through its log authority) signed; key-0 attested everything.
	full := func() map[string]any {
		return map[string]any{
			"authorityMatches": map[string]any{
				"key-0":                         match(0),
				"id-0-tlog":                     match(1, "signed"),
				"key-0-cyclonedx":               match(1, "cyclonedx"),
				"key-0-provenance":              match(1, "provenance"),
				"key-0-provenance-based":        match(1, "provenance-based"),
				"key-0-provenance-allowed":      match(1, "provenance-allowed"),
				"key-0-vuln":                    match(2, "vuln"),
				"key-0-vuln-recent":             match(2, "vuln-recent"),
				"key-0-vuln-ok":                 match(2, "vuln-ok"),
				"id-0-tlog-vuln-recent":         match(1, "vuln-recent"),
				"id-0-tlog-vuln-ok":             match(1, "vuln-ok"),
				"id-0-tsa-provenance":           match(1, "provenance"),
				"id-0-tsa-provenance-allowed":   match(1, "provenance-allowed"),
				"id-0-tsa-provenance-unrelated": match(1, "provenance"),
			},
			"config": nonRoot,
		}
	}
	edit := func(f func(m, in map[string]any)) map[string]any {
		in := full()
		f(in["authorityMatches"].(map[string]any), in)
		return in
	}
	for _, c := range []struct {
		name   string
		in     map[string]any
		wantOK bool
		want   string
	}{
		{"everything", full(), true, ""},
		{"one signer", edit(func(m, _ map[string]any) { delete(m, "id-0-tlog") }), false, "valid signatures from 1 of 3 trusted keys and identities, threshold is 2"},
		{"identity through either time source", edit(func(m, _ map[string]any) { delete(m, "id-0-tlog"); m["id-0-tsa"] = match(1, "signed") }), true, ""},
		{"same identity twice", edit(func(m, _ map[string]any) { delete(m, "key-0"); m["id-0-tsa"] = match(1, "signed") }), false, "threshold is 2"},
		{"two keys", edit(func(m, _ map[string]any) { delete(m, "id-0-tlog"); m["key-1"] = match(0) }), true, ""},
		{"sbom as SPDX", edit(func(m, _ map[string]any) { delete(m, "key-0-cyclonedx"); m["key-1-spdx"] = match(1, "spdx") }), true, ""},
		{"no sbom", edit(func(m, _ map[string]any) { delete(m, "key-0-cyclonedx") }), false, "required sbom attestation missing"},
		{"no provenance", edit(func(m, _ map[string]any) {
			delete(m, "key-0-provenance")
			delete(m, "id-0-tsa-provenance")
			delete(m, "id-0-tsa-provenance-unrelated")
		}), false, "required provenance attestation missing"},
		{"a vuln attestation fails", edit(func(m, _ map[string]any) { m["key-0-vuln-ok"] = match(1, "vuln-ok") }), false, "1 of 2 vuln attestations within max_scan_age 1h0m0s signed by key-0 fail"},
		{"the identity's vuln attestation fails", edit(func(m, _ map[string]any) { delete(m, "id-0-tlog-vuln-ok") }), false, "signed by id-0-tlog fail"},
		{"no recent vuln attestation", edit(func(m, _ map[string]any) {
			delete(m, "key-0-vuln-recent")
			delete(m, "id-0-tlog-vuln-recent")
		}), false, "no vuln attestation within max_scan_age 1h0m0s"},
		{"no base recorded", edit(func(m, _ map[string]any) { delete(m, "key-0-provenance-based") }), false, "no base image digest recorded"},
		{"a base not allowed", edit(func(m, _ map[string]any) { delete(m, "id-0-tsa-provenance-allowed") }), false, "1 of 1 provenance attestations signed by id-0-tsa record a base image that is not an allowed base digest"},
		{"root on one platform", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "app"}}, "linux/arm64": map[string]any{"config": map[string]any{"User": "0:0"}}}
		}), false, `linux/arm64 runs as root (config user "0:0"`},
		{"no user", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{}}}
		}), false, `linux/amd64 runs as root (config user ""`},
		{"user root", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "root"}}}
		}), false, "runs as root"},
		{"user 0", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "0"}}}
		}), false, "runs as root"},
		{"user 00 with a group", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": " 00:1000"}}}
		}), false, "runs as root"},
		{"root with a group", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "root:staff"}}}
		}), false, "runs as root"},
		{"group 0 only", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "1000:0"}}}
		}), true, ""},
		{"user named 0app", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "0app"}}}
		}), true, ""},
		{"uid 1000", edit(func(_, in map[string]any) {
			in["config"] = map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": "1000"}}}
		}), true, ""},
		{"no config", edit(func(_, in map[string]any) { delete(in, "config") }), false, "no image config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, msg := evalRego(t, module, c.in)
			if ok != c.wantOK || !strings.Contains(msg, c.want) {
				t.Fatalf("spec.policy passed=%v (%s), want %v (%q)", ok, msg, c.wantOK, c.want)
			}
		})
	}
}

// TestNonRootRegoIsRunsAsRoot: spec.policy's root_user is slipway
// verify's sign.RunsAsRoot on every user tried.
func TestNonRootRegoIsRunsAsRoot(t *testing.T) {
	cip, _ := exportCIP(t, Policy{Keys: []Key{{PEM: testKeyPEM(t)}}, RequireNonRoot: true})
	for _, u := range []string{"", " ", "root", "root:root", "0", "00", "0:0", "0:1000", "1000:0", "65532:65532", "app", "0app", "-0", "+0",
		"rooted", "ROOT", " 0 ", "18446744073709551616", "1e0", "0x0", ":0", "0.0"} {
		in := map[string]any{"authorityMatches": map[string]any{"key-0": match(0)},
			"config": map[string]any{"linux/amd64": map[string]any{"config": map[string]any{"User": u}}}}
		ok, msg := evalRego(t, cip.Spec.Policy.Data, in)
		if ok == sign.RunsAsRoot(u) {
			t.Errorf("user %q: spec.policy passed=%v (%s), sign.RunsAsRoot=%v", u, ok, msg, sign.RunsAsRoot(u))
		}
	}
}
