package export

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"go.yaml.in/yaml/v3"

	"github.com/slipway-build/slipway/sign/vocab"
)

// How the ClusterImagePolicy is laid out, and why (policy-controller
// v0.13.1, pkg/webhook/validator.go ValidatePolicy):
//
//   - policy-controller admits an image when ANY authority passes, unless
//     spec.policy, evaluated over the authorities that passed
//     (authorityMatches), decides. Slipway's rules are about all signers
//     together (a threshold of distinct signers; an attestation signed by
//     any trusted signer), so every rule is decided in spec.policy (Rego),
//     and the authorities only collect what each signer verifiably signed.
//   - One signer is one or more authorities named "<signer>-…". A key
//     authority (key.data) reads cosign v2's legacy .sig/.att tags; a
//     keyless authority reads Sigstore bundles (signatureFormat: bundle,
//     which needs attestations: the image signature is the attestation
//     with predicate https://sigstore.dev/cosign/sign/v1).
//   - An authority with attestations fails as a whole when one listed
//     attestation has no verified match passing its policy, so each
//     attestation an authority checks gets its own authority: then what
//     one signer lacks does not hide what it has.
//   - spec.policy does not see attestation payloads (PolicyAttestation's
//     Payload is json:"-"), only the list of verified attestations per
//     authority and attestation name. The predicate is judged by the
//     attestation's own policy, and spec.policy compares counts: "every
//     vuln attestation of this signer (within max_scan_age) passes
//     max_severity" is count(vuln-ok) == count(vuln-recent).
//   - A keyless bundle needs a time source: a timestamp authority
//     (rfc3161timestamp, which makes policy-controller ignore the log) or
//     the log (ctlog, or no time source setting). Slipway accepts either
//     unless the policy requires one; one authority per accepted time
//     source, and the signer counts when any of them passes.

// Authority name suffixes: the attestations each authority checks.
const (
	attSPDX              = "spdx"
	attCycloneDX         = "cyclonedx"
	attVuln              = "vuln"
	attVulnRecent        = "vuln-recent"
	attVulnOK            = "vuln-ok"
	attProvenance        = "provenance"
	attProvenanceBased   = "provenance-based"
	attProvenanceAllowed = "provenance-allowed"
)

// Time sources of keyless authorities.
const (
	timeTSA  = "tsa"
	timeTlog = "tlog"
)

// futureSkew is how far in the future a scan may have finished (slipway's
// sign.futureSkew).
const futureSkew = 5 * time.Minute

// cipDoc is a policy.sigstore.dev/v1beta1 ClusterImagePolicy.
type cipDoc struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   meta    `yaml:"metadata"`
	Spec       cipSpec `yaml:"spec"`
}

type meta struct {
	Name string `yaml:"name"`
}

type cipSpec struct {
	Images      []imageGlob `yaml:"images"`
	Authorities []authority `yaml:"authorities"`
	Policy      *cipPolicy  `yaml:"policy,omitempty"`
}

type imageGlob struct {
	Glob string `yaml:"glob"`
}

type authority struct {
	Name             string        `yaml:"name"`
	SignatureFormat  string        `yaml:"signatureFormat,omitempty"`
	Key              *keyRef       `yaml:"key,omitempty"`
	Keyless          *keylessRef   `yaml:"keyless,omitempty"`
	CTLog            *trustRef     `yaml:"ctlog,omitempty"`
	RFC3161Timestamp *trustRef     `yaml:"rfc3161timestamp,omitempty"`
	Attestations     []attestation `yaml:"attestations,omitempty"`
}

type keyRef struct {
	Data string `yaml:"data"`
}

type keylessRef struct {
	URL               string     `yaml:"url,omitempty"`
	Identities        []identity `yaml:"identities"`
	TrustRootRef      string     `yaml:"trustRootRef,omitempty"`
	InsecureIgnoreSCT bool       `yaml:"insecureIgnoreSCT,omitempty"`
}

type identity struct {
	Issuer        string `yaml:"issuer,omitempty"`
	Subject       string `yaml:"subject,omitempty"`
	IssuerRegExp  string `yaml:"issuerRegExp,omitempty"`
	SubjectRegExp string `yaml:"subjectRegExp,omitempty"`
}

type trustRef struct {
	TrustRootRef string `yaml:"trustRootRef,omitempty"`
}

type attestation struct {
	Name          string     `yaml:"name"`
	PredicateType string     `yaml:"predicateType"`
	Policy        *cipPolicy `yaml:"policy,omitempty"`
}

type cipPolicy struct {
	Type            string `yaml:"type"`
	Data            string `yaml:"data"`
	FetchConfigFile bool   `yaml:"fetchConfigFile,omitempty"`
}

// trustRootDoc is a policy.sigstore.dev/v1alpha1 TrustRoot bringing its
// own keys (spec.sigstoreKeys); certChain and publicKey are []byte
// fields in policy-controller's types: base64 of the PEM.
type trustRootDoc struct {
	APIVersion string        `yaml:"apiVersion"`
	Kind       string        `yaml:"kind"`
	Metadata   meta          `yaml:"metadata"`
	Spec       trustRootSpec `yaml:"spec"`
}

type trustRootSpec struct {
	SigstoreKeys sigstoreKeys `yaml:"sigstoreKeys"`
}

type sigstoreKeys struct {
	CertificateAuthorities []certAuthority `yaml:"certificateAuthorities"`
	TLogs                  []tlogInstance  `yaml:"tLogs,omitempty"`
	CTLogs                 []tlogInstance  `yaml:"ctLogs,omitempty"`
	TimestampAuthorities   []certAuthority `yaml:"timestampAuthorities,omitempty"`
}

type certAuthority struct {
	Subject   distinguishedName `yaml:"subject"`
	URI       string            `yaml:"uri"`
	CertChain string            `yaml:"certChain"`
}

type distinguishedName struct {
	Organization string `yaml:"organization"`
	CommonName   string `yaml:"commonName"`
}

type tlogInstance struct {
	BaseURL       string `yaml:"baseURL"`
	HashAlgorithm string `yaml:"hashAlgorithm"`
	PublicKey     string `yaml:"publicKey"`
}

// signer is one trusted key or identity and the authority name prefixes
// that stand for it (an identity has one per accepted time source).
type signer struct {
	id       string
	prefixes []string
	// base is the authority every prefix's authorities are copies of.
	base map[string]authority
}

// cipExport is the state of one ClusterImagePolicy export.
type cipExport struct {
	p       Policy
	o       Options
	r       *Result
	root    *root.TrustedRoot
	rootRef string
	signers []signer
}

// ClusterImagePolicy exports p as a sigstore policy-controller (v0.13.1)
// ClusterImagePolicy for o.Images, preceded by a TrustRoot named like the
// policy when keyless identities need p.TrustedRoot. The rules are decided
// by a Rego spec.policy over the authorities that passed, so that the
// verdict is slipway verify's; a rule policy-controller cannot evaluate as
// slipway does is an *UnsupportedError (or, under o.AllowWeaker, left out
// and listed in Result.Dropped).
func ClusterImagePolicy(p Policy, o Options) (*Result, error) {
	if o.Name == "" {
		o.Name = "slipway"
	}
	if len(o.Images) == 0 {
		return nil, errors.New("clusterimagepolicy: no image globs")
	}
	e := &cipExport{p: p, o: o, r: &Result{}}
	if err := e.check(); err != nil {
		return nil, err
	}
	if err := e.buildSigners(); err != nil {
		return nil, err
	}
	cip := cipDoc{APIVersion: "policy.sigstore.dev/v1beta1", Kind: "ClusterImagePolicy", Metadata: meta{Name: o.Name}}
	for _, g := range o.Images {
		cip.Spec.Images = append(cip.Spec.Images, imageGlob{Glob: g})
	}
	auths, err := e.authorities()
	if err != nil {
		return nil, err
	}
	cip.Spec.Authorities = auths
	cip.Spec.Policy = &cipPolicy{Type: "rego", Data: e.specPolicy(), FetchConfigFile: p.RequireNonRoot}

	var out bytes.Buffer
	if e.rootRef != "" {
		tr, err := e.trustRoot()
		if err != nil {
			return nil, err
		}
		if err := encodeDoc(&out, tr); err != nil {
			return nil, err
		}
		out.WriteString("---\n")
	}
	if err := encodeDoc(&out, cip); err != nil {
		return nil, err
	}
	e.r.YAML = out.Bytes()
	return e.r, nil
}

func encodeDoc(w *bytes.Buffer, doc any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("clusterimagepolicy: encoding YAML: %w", err)
	}
	return enc.Close()
}

// check validates p as far as the export depends on it.
func (e *cipExport) check() error {
	p := e.p
	n := len(p.Keys) + len(p.Identities)
	if n == 0 {
		return errors.New("clusterimagepolicy: the policy trusts no key and no identity")
	}
	if p.Threshold < 0 || p.Threshold > n {
		return fmt.Errorf("clusterimagepolicy: threshold %d must be between 1 and the %d trusted keys and identities", p.Threshold, n)
	}
	for _, k := range p.RequireAttestations {
		if !slices.Contains(vocab.Kinds(), k) {
			return fmt.Errorf("clusterimagepolicy: unknown attestation kind %q", k)
		}
	}
	if p.MaxSeverity != "" {
		if _, ok := severityRank[strings.ToUpper(p.MaxSeverity)]; !ok {
			return fmt.Errorf("clusterimagepolicy: unknown severity %q", p.MaxSeverity)
		}
	}
	if p.MaxScanAge < 0 {
		return errors.New("clusterimagepolicy: max scan age must not be negative")
	}
	for _, d := range p.AllowedBaseDigests {
		if _, err := baseHex(d); err != nil {
			return err
		}
	}
	if p.TrustedRoot != nil {
		tr, err := root.NewTrustedRootFromJSON(p.TrustedRoot)
		if err != nil {
			return fmt.Errorf("clusterimagepolicy: reading the trusted root: %w", err)
		}
		e.root = tr
	}
	return nil
}

// baseHex is the hex of a sha256 digest "sha256:<hex>".
func baseHex(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("clusterimagepolicy: allowed base digest %q is not sha256:<64 hex>", d)
	}
	return h, nil
}

// buildSigners lays out the signers and their base authorities.
func (e *cipExport) buildSigners() error {
	p := e.p
	requireTlog, requireTimestamp := p.RequireTlog, p.RequireTimestamp
	if len(p.Keys) > 0 && (requireTlog || requireTimestamp) {
		rule := "require_timestamp"
		if requireTlog {
			rule = "require_tlog"
		}
		// Slipway counts only key-signed bundles then; policy-controller's
		// key authorities read only legacy signatures (signatureFormat:
		// bundle is keyless only), which carry neither a log entry nor a
		// timestamp slipway checks.
		if err := e.o.unsupported(e.r, rule, TargetClusterImagePolicy,
			"policy-controller's key authorities read only cosign v2 legacy signatures, and slipway counts only key-signed Sigstore bundles under this rule"); err != nil {
			return err
		}
	}
	// The same key or identity given twice counts once (slipway's
	// threshold counts distinct signers).
	seen := map[string]bool{}
	for i, k := range p.Keys {
		der, err := parsePublicKeyPEM(k.PEM)
		if err != nil {
			return fmt.Errorf("clusterimagepolicy: key %s: %w", keyName(k, i), err)
		}
		if seen[string(der)] {
			continue
		}
		seen[string(der)] = true
		id := fmt.Sprintf("key-%d", len(e.signers))
		e.signers = append(e.signers, signer{id: id, prefixes: []string{id},
			base: map[string]authority{id: {Key: &keyRef{Data: strings.TrimSpace(k.PEM) + "\n"}}}})
	}
	if len(p.Identities) == 0 {
		return e.checkDistinct()
	}
	if requireTlog && requireTimestamp {
		// checkOptsFromAuthority: with rfc3161timestamp the log is ignored
		// (IgnoreTlog), so one authority cannot require both on the same
		// bundle, and two authorities would accept two different bundles.
		if err := e.o.unsupported(e.r, "require_tlog", TargetClusterImagePolicy,
			"policy-controller ignores the transparency log of a bundle whose timestamp it checks, so it cannot require both on one signature"); err != nil {
			return err
		}
		requireTlog = false
	}
	var times []string
	switch {
	case requireTimestamp:
		times = []string{timeTSA}
	case requireTlog:
		times = []string{timeTlog}
	case e.root == nil:
		times = []string{timeTlog} // the public-good instance: its log
	default:
		if len(e.root.TimestampingAuthorities()) > 0 {
			times = append(times, timeTSA)
		}
		if len(e.root.RekorLogs()) > 0 {
			times = append(times, timeTlog)
		}
		if len(times) == 0 {
			return errors.New("clusterimagepolicy: the trusted root has neither a timestamp authority nor a transparency log, so no keyless signature can be verified")
		}
	}
	if e.root != nil {
		e.rootRef = e.o.Name
		if err := e.checkValidity(); err != nil {
			return err
		}
	} else if slices.Contains(times, timeTSA) {
		return errors.New("clusterimagepolicy: require_timestamp with keyless identities needs a trusted root holding the timestamp authority")
	}
	for i, id := range p.Identities {
		if k := fmt.Sprintf("%q %q %q %q", id.Issuer, id.Subject, id.IssuerRegexp, id.SubjectRegexp); seen[k] {
			continue
		} else {
			seen[k] = true
		}
		s := signer{id: fmt.Sprintf("id-%d", i), base: map[string]authority{}}
		kl := keylessRef{
			Identities:   []identity{{Issuer: id.Issuer, Subject: id.Subject, IssuerRegExp: id.IssuerRegexp, SubjectRegExp: id.SubjectRegexp}},
			TrustRootRef: e.rootRef,
		}
		if e.root != nil {
			if cas := e.root.FulcioCertificateAuthorities(); len(cas) > 0 {
				if ca, ok := cas[0].(*root.FulcioCertificateAuthority); ok && ca.URI != "" {
					kl.URL = ca.URI
				}
			}
			// Slipway does not check SCTs; without CT logs policy-controller
			// could not either. With CT logs it requires one (stricter).
			kl.InsecureIgnoreSCT = len(e.root.CTLogs()) == 0
		}
		for _, tm := range times {
			prefix := s.id + "-" + tm
			a := authority{SignatureFormat: "bundle", Keyless: &kl}
			switch tm {
			case timeTSA:
				a.RFC3161Timestamp = &trustRef{TrustRootRef: e.rootRef}
			case timeTlog:
				if e.rootRef != "" {
					a.CTLog = &trustRef{TrustRootRef: e.rootRef}
				}
			}
			s.prefixes = append(s.prefixes, prefix)
			s.base[prefix] = a
		}
		e.signers = append(e.signers, s)
	}
	return e.checkDistinct()
}

// checkDistinct refuses a threshold above the distinct signers, as slipway
// verify does.
func (e *cipExport) checkDistinct() error {
	if e.p.Threshold > len(e.signers) {
		return fmt.Errorf("clusterimagepolicy: threshold %d is more than the %d distinct trusted keys and identities", e.p.Threshold, len(e.signers))
	}
	return nil
}

// TrustRoot is a policy-controller TrustRoot (policy.sigstore.dev/v1alpha1,
// spec.sigstoreKeys) named name holding the certificate authorities,
// timestamp authorities and logs of trustedRoot (a trusted_root.json), as
// ClusterImagePolicy writes it before the policy. Validity periods are
// not carried: a TrustRoot has none.
func TrustRoot(trustedRoot []byte, name string) ([]byte, error) {
	tr, err := root.NewTrustedRootFromJSON(trustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trustroot: reading the trusted root: %w", err)
	}
	doc, err := (&cipExport{root: tr, rootRef: name}).trustRoot()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := encodeDoc(&out, doc); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func keyName(k Key, i int) string {
	if k.Ref != "" {
		return k.Ref
	}
	return strconv.Itoa(i)
}

// parsePublicKeyPEM checks a PEM public key and returns its DER.
func parsePublicKeyPEM(s string) ([]byte, error) {
	b, rest := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("not PEM")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block (give each key as its own Key)")
	}
	if _, err := x509.ParsePKIXPublicKey(b.Bytes); err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	return b.Bytes, nil
}

// checkValidity refuses a trusted root whose authorities or logs have an
// end of validity: a TrustRoot's sigstoreKeys have no validity periods
// (policy-controller converts them with a start of 0 and no end), so it
// would trust them after the end slipway respects.
func (e *cipExport) checkValidity() error {
	var ended []string
	for _, ca := range e.root.FulcioCertificateAuthorities() {
		if f, ok := ca.(*root.FulcioCertificateAuthority); ok && !f.ValidityPeriodEnd.IsZero() {
			ended = append(ended, "certificate authority "+f.URI)
		}
	}
	for _, ts := range e.root.TimestampingAuthorities() {
		if s, ok := ts.(*root.SigstoreTimestampingAuthority); ok && !s.ValidityPeriodEnd.IsZero() {
			ended = append(ended, "timestamp authority "+s.URI)
		}
	}
	for _, l := range e.root.RekorLogs() {
		if !l.ValidityPeriodEnd.IsZero() {
			ended = append(ended, "transparency log "+l.BaseURL)
		}
	}
	for _, l := range e.root.CTLogs() {
		if !l.ValidityPeriodEnd.IsZero() {
			ended = append(ended, "CT log "+l.BaseURL)
		}
	}
	if len(ended) == 0 {
		return nil
	}
	slices.Sort(ended)
	return e.o.unsupported(e.r, "trusted_root", TargetClusterImagePolicy,
		"policy-controller's TrustRoot has no validity periods, and "+strings.Join(ended, ", ")+" has an end of validity")
}

// need reports which attestation authorities the rules need.
func (e *cipExport) need() []string {
	p := e.p
	var out []string
	add := func(s ...string) {
		for _, x := range s {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	for _, k := range p.RequireAttestations {
		switch k {
		case vocab.KindSBOM:
			add(attSPDX, attCycloneDX)
		case vocab.KindVuln:
			add(attVuln)
		case vocab.KindProvenance:
			add(attProvenance)
		}
	}
	if e.vulnRules() {
		add(attVuln, attVulnOK)
		if p.MaxScanAge > 0 {
			add(attVulnRecent)
		}
	}
	if len(p.AllowedBaseDigests) > 0 {
		add(attProvenance, attProvenanceBased, attProvenanceAllowed)
	}
	return out
}

func (e *cipExport) vulnRules() bool { return e.p.MaxSeverity != "" || e.p.MaxScanAge > 0 }

// authorities lists every signer's authorities.
func (e *cipExport) authorities() ([]authority, error) {
	need := e.need()
	var out []authority
	for _, s := range e.signers {
		for _, prefix := range s.prefixes {
			base := s.base[prefix]
			sig := base
			sig.Name = prefix
			if base.Keyless != nil {
				// The bundle path reads attestations only; the image
				// signature is one.
				sig.Attestations = []attestation{{Name: "signed", PredicateType: PredicateSign}}
			}
			out = append(out, sig)
			for _, n := range need {
				a := base
				a.Name = prefix + "-" + n
				att, err := e.attestation(n)
				if err != nil {
					return nil, err
				}
				a.Attestations = []attestation{att}
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// attestation is the attestation an authority named "<prefix>-name"
// checks; its name is name.
func (e *cipExport) attestation(name string) (attestation, error) {
	rego := func(data string) *cipPolicy { return &cipPolicy{Type: "rego", Data: data} }
	switch name {
	case attSPDX:
		return attestation{Name: name, PredicateType: PredicateSPDX}, nil
	case attCycloneDX:
		return attestation{Name: name, PredicateType: PredicateCycloneDX}, nil
	case attVuln:
		return attestation{Name: name, PredicateType: PredicateVuln}, nil
	case attVulnRecent:
		return attestation{Name: name, PredicateType: PredicateVuln, Policy: rego(vulnRecentRego(e.p.MaxScanAge))}, nil
	case attVulnOK:
		return attestation{Name: name, PredicateType: PredicateVuln, Policy: rego(vulnOKRego(e.p.MaxSeverity, e.p.MaxScanAge))}, nil
	case attProvenance:
		return attestation{Name: name, PredicateType: PredicateProvenance}, nil
	case attProvenanceBased:
		return attestation{Name: name, PredicateType: PredicateProvenance, Policy: rego(provenanceBasedRego)}, nil
	case attProvenanceAllowed:
		data, err := provenanceAllowedRego(e.p.AllowedBaseDigests)
		if err != nil {
			return attestation{}, err
		}
		return attestation{Name: name, PredicateType: PredicateProvenance, Policy: rego(data)}, nil
	}
	return attestation{}, fmt.Errorf("clusterimagepolicy: unknown attestation %q", name)
}

// severityRank is scan.Severity.Rank: an unknown severity ranks as
// UNKNOWN.
var severityRank = map[string]int{"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

// regoString quotes s for Rego (a JSON string is a Rego string).
func regoString(s string) string { return strconv.Quote(s) }

// vulnRecentRego admits a vuln attestation unless its scan finished
// longer ago than maxAge. An unreadable finish time is admitted here, so
// that the attestation is counted and then fails vuln-ok.
func vulnRecentRego(maxAge time.Duration) string {
	return fmt.Sprintf(`package sigstore

max_age_ns := %d

too_old {
  finished := time.parse_rfc3339_ns(input.predicate.metadata.scanFinishedOn)
  time.now_ns() - finished > max_age_ns
}

isCompliant {
  not too_old
}
`, maxAge.Nanoseconds())
}

// vulnOKRego admits a vuln attestation that slipway verify would accept
// as the newest one: Trivy's report is there (scanner.result.Results),
// every vulnerability has an ID, no finding at or above maxSeverity
// counts (every entry of Results[].Vulnerabilities[], and each
// slipway.suppressed[] entry whose expiresAt has passed), and the scan
// finished no longer than maxAge ago and not in the future.
func vulnOKRego(maxSeverity string, maxAge time.Duration) string {
	var b strings.Builder
	b.WriteString(`package sigstore

rank := {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

sev(s) = r {
  r := rank[upper(s)]
} else = 0 {
  true
}

results := input.predicate.scanner.result.Results

unnamed {
  v := results[_].Vulnerabilities[_]
  object.get(v, "VulnerabilityID", "") == ""
}

unnamed {
  s := input.predicate.slipway.suppressed[_]
  object.get(s.vulnerability, "VulnerabilityID", "") == ""
}

readable {
  is_array(results)
  not unnamed
}
`)
	conds := []string{"readable"}
	if maxSeverity != "" {
		fmt.Fprintf(&b, `
limit := %d

bad[id] {
  v := results[_].Vulnerabilities[_]
  sev(object.get(v, "Severity", "")) >= limit
  id := v.VulnerabilityID
}

bad[id] {
  s := input.predicate.slipway.suppressed[_]
  s.expiresAt != "0001-01-01T00:00:00Z"
  time.now_ns() >= time.parse_rfc3339_ns(s.expiresAt)
  sev(object.get(s.vulnerability, "Severity", "")) >= limit
  id := s.vulnerability.VulnerabilityID
}
`, severityRank[strings.ToUpper(maxSeverity)])
		conds = append(conds, "count(bad) == 0")
	}
	if maxAge > 0 {
		fmt.Fprintf(&b, `
max_age_ns := %d

skew_ns := %d

fresh {
  finished := time.parse_rfc3339_ns(input.predicate.metadata.scanFinishedOn)
  time.now_ns() - finished <= max_age_ns
  finished - time.now_ns() <= skew_ns
}
`, maxAge.Nanoseconds(), futureSkew.Nanoseconds())
		conds = append(conds, "fresh")
	}
	b.WriteString("\nisCompliant {\n  " + strings.Join(conds, "\n  ") + "\n}\n")
	return b.String()
}

// provenanceBasedRego admits a provenance attestation recording a base
// image.
const provenanceBasedRego = `package sigstore

isCompliant {
  d := input.predicate.buildDefinition.resolvedDependencies[_]
  d.name == "base-image"
}
`

// provenanceAllowedRego admits a provenance attestation each of whose
// base images has an allowed sha256 digest.
func provenanceAllowedRego(allowed []string) (string, error) {
	var hexes []string
	for _, d := range allowed {
		h, err := baseHex(d)
		if err != nil {
			return "", err
		}
		hexes = append(hexes, regoString(h))
	}
	return fmt.Sprintf(`package sigstore

allowed := {%s}

disallowed {
  d := input.predicate.buildDefinition.resolvedDependencies[_]
  d.name == "base-image"
  not allowed[object.get(object.get(d, "digest", {}), "sha256", "")]
}

isCompliant {
  not disallowed
}
`, strings.Join(hexes, ", ")), nil
}

// specPolicy is the Rego of spec.policy: every rule of the policy over
// the authorities that passed (input.authorityMatches) and, for
// require_non_root, the config of every platform (input.config).
func (e *cipExport) specPolicy() string {
	p := e.p
	var b strings.Builder
	b.WriteString("package sigstore\n\n")
	b.WriteString("# Trusted signers (keys and keyless identities) and the authorities that\n# stand for each; a signer counts when one of them passed.\nsigners := {\n")
	for i, s := range e.signers {
		var ps []string
		for _, x := range s.prefixes {
			ps = append(ps, regoString(x))
		}
		sep := ","
		if i == len(e.signers)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "  %s: [%s]%s\n", regoString(s.id), strings.Join(ps, ", "), sep)
	}
	fmt.Fprintf(&b, "}\n\nthreshold := %d\n", max(p.Threshold, 1))
	b.WriteString(`
matches := object.get(input, "authorityMatches", {})

prefixes[x] {
  x := signers[_][_]
}

signed[s] {
  x := signers[s][_]
  matches[x]
}

# atts(x, name) lists the attestations authority "<x>-<name>" verified.
atts(x, name) = a {
  a := matches[concat("-", [x, name])].attestations[name]
} else = [] {
  true
}

deny[msg] {
  count(signed) < threshold
  msg := sprintf("valid signatures from %d of %d trusted keys and identities, threshold is %d", [count(signed), count(signers), threshold])
}
`)
	for _, k := range p.RequireAttestations {
		var names []string
		switch k {
		case vocab.KindSBOM:
			names = []string{attSPDX, attCycloneDX}
		case vocab.KindVuln:
			names = []string{attVuln}
		case vocab.KindProvenance:
			names = []string{attProvenance}
		}
		var qs []string
		for _, n := range names {
			qs = append(qs, regoString(n))
		}
		fmt.Fprintf(&b, `
has_%[1]s {
  n := [%[2]s][_]
  count(atts(prefixes[_], n)) > 0
}

deny["required %[1]s attestation missing (none signed by a trusted key or identity)"] {
  not has_%[1]s
}
`, k, strings.Join(qs, ", "))
	}
	if e.vulnRules() {
		recent := attVuln
		scope := ""
		if p.MaxScanAge > 0 {
			recent = attVulnRecent
			scope = " within max_scan_age " + p.MaxScanAge.String()
		}
		fmt.Fprintf(&b, `
# Slipway judges the newest vuln attestation; here every one%[2]s of
# every signer must pass (vuln-ok), and there must be one.
has_vuln_recent {
  count(atts(prefixes[_], %[1]q)) > 0
}

deny["no vuln attestation%[2]s signed by a trusted key or identity (required by max_severity / max_scan_age)"] {
  not has_vuln_recent
}

deny[msg] {
  x := prefixes[_]
  n := count(atts(x, %[1]q))
  ok := count(atts(x, %[3]q))
  ok < n
  msg := sprintf("%%d of %%d vuln attestations%[2]s signed by %%s fail max_severity / max_scan_age", [n - ok, n, x])
}
`, recent, scope, attVulnOK)
	}
	if len(p.AllowedBaseDigests) > 0 {
		fmt.Fprintf(&b, `
has_base {
  count(atts(prefixes[_], %[1]q)) > 0
}

deny["no base image digest recorded in a provenance attestation signed by a trusted key or identity"] {
  not has_base
}

deny[msg] {
  x := prefixes[_]
  n := count(atts(x, %[2]q))
  ok := count(atts(x, %[3]q))
  ok < n
  msg := sprintf("%%d of %%d provenance attestations signed by %%s record a base image that is not an allowed base digest", [n - ok, n, x])
}
`, attProvenanceBased, attProvenance, attProvenanceAllowed)
	}
	if p.RequireNonRoot {
		b.WriteString(`
# require_non_root: every platform's config user (fetchConfigFile).
configs := object.get(input, "config", {})

# sign.RunsAsRoot: the user part of "user[:group]" is empty, root, or
# numerically 0.
user_part(u) = p {
  p := split(trim_space(u), ":")[0]
}

root_user(u) {
  user_part(u) == ""
}

root_user(u) {
  user_part(u) == "root"
}

root_user(u) {
  regex.match("^[0-9]+$", user_part(u))
  to_number(user_part(u)) == 0
}

deny["no image config to check require_non_root against"] {
  count(configs) == 0
}

deny[msg] {
  cfg := configs[platform]
  u := object.get(object.get(cfg, "config", {}), "User", "")
  root_user(u)
  msg := sprintf("%s runs as root (config user %q; require_non_root)", [platform, u])
}
`)
	}
	b.WriteString(`
isCompliant[response] {
  count(deny) == 0
  response := {"result": true, "error": "", "warning": ""}
}

isCompliant[response] {
  count(deny) > 0
  response := {"result": false, "error": concat("; ", deny), "warning": ""}
}
`)
	return b.String()
}

// trustRoot is the TrustRoot holding e.root's certificate authorities,
// timestamp authorities and logs (policy-controller's sigstoreKeys:
// certChain is the PEM chain, leaf or intermediates first, root last;
// publicKey is a PEM public key).
func (e *cipExport) trustRoot() (*trustRootDoc, error) {
	var sk sigstoreKeys
	for _, ca := range e.root.FulcioCertificateAuthorities() {
		f, ok := ca.(*root.FulcioCertificateAuthority)
		if !ok {
			return nil, fmt.Errorf("clusterimagepolicy: certificate authority of type %T", ca)
		}
		sk.CertificateAuthorities = append(sk.CertificateAuthorities, certAuthorityOf(f.URI, append(slices.Clone(f.Intermediates), f.Root)))
	}
	for _, ts := range e.root.TimestampingAuthorities() {
		s, ok := ts.(*root.SigstoreTimestampingAuthority)
		if !ok {
			return nil, fmt.Errorf("clusterimagepolicy: timestamp authority of type %T", ts)
		}
		var chain []*x509.Certificate
		if s.Leaf != nil {
			chain = append(chain, s.Leaf)
		}
		sk.TimestampAuthorities = append(sk.TimestampAuthorities, certAuthorityOf(s.URI, append(append(chain, s.Intermediates...), s.Root)))
	}
	logs := func(m map[string]*root.TransparencyLog) ([]tlogInstance, error) {
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var out []tlogInstance
		for _, id := range ids {
			l := m[id]
			der, err := x509.MarshalPKIXPublicKey(l.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("clusterimagepolicy: log %s key: %w", l.BaseURL, err)
			}
			out = append(out, tlogInstance{BaseURL: l.BaseURL, HashAlgorithm: hashName(l.HashFunc.String()),
				PublicKey: base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
		}
		return out, nil
	}
	var err error
	if sk.TLogs, err = logs(e.root.RekorLogs()); err != nil {
		return nil, err
	}
	if sk.CTLogs, err = logs(e.root.CTLogs()); err != nil {
		return nil, err
	}
	if len(sk.CertificateAuthorities) == 0 {
		return nil, errors.New("clusterimagepolicy: the trusted root has no certificate authority for keyless identities")
	}
	return &trustRootDoc{APIVersion: "policy.sigstore.dev/v1alpha1", Kind: "TrustRoot", Metadata: meta{Name: e.rootRef},
		Spec: trustRootSpec{SigstoreKeys: sk}}, nil
}

// hashName is policy-controller's name of a hash ("sha256").
func hashName(goName string) string {
	return strings.ToLower(strings.ReplaceAll(goName, "-", ""))
}

func certAuthorityOf(uri string, chain []*x509.Certificate) certAuthority {
	var pemChain []byte
	for _, c := range chain {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	top := chain[len(chain)-1]
	org := ""
	if len(top.Subject.Organization) > 0 {
		org = top.Subject.Organization[0]
	}
	return certAuthority{Subject: distinguishedName{Organization: org, CommonName: top.Subject.CommonName}, URI: uri, CertChain: base64.StdEncoding.EncodeToString(pemChain)}
}
