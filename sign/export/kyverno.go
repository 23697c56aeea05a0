package export

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The names the Kyverno policy reads, as slipway writes them (checked
// against sign and build in the tests; this package imports neither).
const (
	baseImageDependency  = "base-image"                           // sign.BaseImageDependency
	annotationBaseDigest = "org.opencontainers.image.base.digest" // build.AnnotationBaseDigest
	// maxChildManifests is how many manifests of an index slipway reads
	// (sign's maxChildManifests); more is a denial.
	maxChildManifests = 64
	// kyvernoFutureSkew is futureSkew as a Kyverno duration: how far in
	// the future slipway accepts a scan time.
	kyvernoFutureSkew = "-5m0s"
	// publicRekor is the Rekor URL Kyverno's keyless attestor validation
	// wants; the SigstoreBundle verifier never contacts it.
	publicRekor = "https://rekor.sigstore.dev"
)

// Image manifest media types (ggcr's MediaType.IsImage): the children of an
// index that run, and that slipway checks for require_non_root and base
// annotations.
var imageManifestTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// Kyverno exports p as a Kyverno (v1.19) ClusterPolicy: one verifyImages
// rule of type SigstoreBundle (slipway's signatures and attestations as
// OCI 1.1 referrers) that rewrites tags to the verified digest, and, for
// require_non_root and the base digest annotations, a validate rule that
// reads every platform's manifest and config through Kyverno's
// imageRegistry context.
//
// Image signatures are checked as attestations of cosign's signature
// predicate (PredicateSign), because Kyverno's SigstoreBundle signature
// check counts any bundle about the digest, an SBOM attestation included.
// A rule Kyverno cannot evaluate as slipway verify does is an
// *UnsupportedError, or with o.AllowWeaker left out and listed in
// Result.Dropped. Kyverno reads only the bundle format: an image signed only
// in cosign's legacy .sig/.att tags, which slipway verify accepts, is denied.
func Kyverno(p Policy, o Options) (*Result, error) {
	const target = TargetKyverno
	r := &Result{}
	name := o.Name
	if name == "" {
		name = "slipway"
	}
	if len(o.Images) == 0 {
		return nil, errors.New("kyverno: no image references to apply the policy to")
	}
	for _, img := range o.Images {
		if strings.TrimSpace(img) == "" || strings.ContainsAny(img, "'`") {
			return nil, fmt.Errorf("kyverno: image reference %q is empty or holds a quote", img)
		}
	}
	keys, err := distinctKeys(p.Keys)
	if err != nil {
		return nil, err
	}
	ids := distinctIdentities(p.Identities)
	n := len(keys) + len(ids)
	if n == 0 {
		return nil, errors.New("kyverno: the policy trusts no key and no identity")
	}
	if p.Threshold < 0 || p.threshold() > n {
		return nil, fmt.Errorf("kyverno: threshold %d must be between 1 and the %d distinct trusted keys and identities", p.Threshold, n)
	}

	// Trust material. Kyverno's SigstoreBundle verifier takes the trusted
	// root (CAs, logs, timestamp authorities) from its process-wide TUF
	// client, never from the policy.
	if p.TrustedRoot != nil && (len(ids) > 0 || p.RequireTlog) {
		if err := o.unsupported(r, "trusted_root", target, "Kyverno's SigstoreBundle verifier reads the trusted root from its own TUF client (pkg/sigstoretuf), never from the policy: keyless identities and logs would be checked against Kyverno's root, not this one"); err != nil {
			return nil, err
		}
	}
	if p.RequireTimestamp {
		if err := o.unsupported(r, "require_timestamp", target, "Kyverno's SigstoreBundle verifier cannot require an RFC 3161 timestamp (it sets only WithTransparencyLog and WithObserverTimestamps, which a log entry alone meets)"); err != nil {
			return nil, err
		}
	}
	tlog := p.RequireTlog

	var entries []kvAttestor
	for _, k := range keys {
		a := kvAttestor{Keys: &kvKeys{PublicKeys: k}}
		if tlog {
			// With a log, sigstore-go needs a time source: the log's.
			a.Keys.Rekor = &kvRekor{URL: publicRekor}
			a.Keys.CTLog = &kvCTLog{}
		} else {
			a.Keys.Rekor = &kvRekor{URL: publicRekor, IgnoreTlog: true}
			a.Keys.CTLog = &kvCTLog{IgnoreSCT: true}
		}
		entries = append(entries, a)
	}
	for _, id := range ids {
		k := &kvKeyless{
			Issuer: id.Issuer, Subject: id.Subject,
			IssuerRegExp: anchored(id.IssuerRegexp), SubjectRegExp: anchored(id.SubjectRegexp),
			// The bundle verifier reads ignoreSCT as "no observer
			// timestamp"; slipway requires one for certificates.
			Rekor: &kvRekor{URL: publicRekor, IgnoreTlog: !tlog},
			CTLog: &kvCTLog{},
		}
		entries = append(entries, kvAttestor{Keyless: k})
	}
	anyOf := []kvAttestorSet{{Count: 1, Entries: entries}}

	iv := kvImageVerification{
		Type:            "SigstoreBundle",
		FailureAction:   "Enforce",
		ImageReferences: o.Images,
		MutateDigest:    true,
		VerifyDigest:    true,
		Required:        true,
		Attestations: []kvAttestation{{
			Type:      PredicateSign,
			Attestors: []kvAttestorSet{{Count: p.threshold(), Entries: entries}},
		}},
	}

	kinds := map[string]bool{}
	for _, k := range p.RequireAttestations {
		kinds[k] = true
	}
	if kinds["sbom"] {
		if err := o.unsupported(r, "require_attestations", target, "sbom: slipway accepts an SPDX or a CycloneDX attestation, and a Kyverno attestation names one predicate type (all of them must pass)"); err != nil {
			return nil, err
		}
	}

	// Conditions over one predicate are evaluated per attestor, over every
	// statement that attestor signed; slipway reads the newest across
	// all trusted signers. With one signer that is stricter (older
	// attestations must pass too); with several it would be weaker.
	vulnRules := p.MaxSeverity != "" || p.MaxScanAge > 0
	if vulnRules || kinds["vuln"] {
		var conds []kvCondition
		ok := true
		if vulnRules && len(entries) > 1 {
			for _, rule := range []string{"max_severity", "max_scan_age"} {
				if (rule == "max_severity" && p.MaxSeverity == "") || (rule == "max_scan_age" && p.MaxScanAge == 0) {
					continue
				}
				if err := o.unsupported(r, rule, target, fmt.Sprintf("Kyverno checks attestation conditions per attestor and passes when any one of the %d trusted keys and identities has only passing vuln attestations; slipway checks the newest vuln attestation of them all", len(entries))); err != nil {
					return nil, err
				}
			}
			ok = false
		}
		if vulnRules && ok {
			c, err := vulnConditions(p)
			if err != nil {
				return nil, err
			}
			conds = c
		}
		if kinds["vuln"] || len(conds) > 0 {
			iv.Attestations = append(iv.Attestations, kvAttestation{Type: PredicateVuln, Attestors: anyOf, Conditions: allOf(conds)})
		}
	}

	var annotationDigests []string
	if len(p.AllowedBaseDigests) > 0 || kinds["provenance"] {
		var conds []kvCondition
		ok := true
		if len(p.AllowedBaseDigests) > 0 && len(entries) > 1 {
			if err := o.unsupported(r, "allowed_base_digests", target, fmt.Sprintf("Kyverno checks provenance conditions per attestor and passes when any one of the %d trusted keys and identities has only passing provenance; slipway checks the base digests of every trusted provenance", len(entries))); err != nil {
				return nil, err
			}
			ok = false
		}
		if len(p.AllowedBaseDigests) > 0 && ok {
			hexes, full, err := splitDigests(p.AllowedBaseDigests)
			if err != nil {
				return nil, err
			}
			annotationDigests = full
			conds = baseConditions(hexes)
		}
		if kinds["provenance"] || len(conds) > 0 {
			iv.Attestations = append(iv.Attestations, kvAttestation{Type: PredicateProvenance, Attestors: anyOf, Conditions: allOf(conds)})
		}
	}

	pod := kvMatch{Any: []kvMatchResources{{Resources: kvResources{Kinds: []string{"Pod"}}}}}
	rules := []kvRule{{Name: "slipway-verify-images", Match: pod, VerifyImages: []kvImageVerification{iv}}}
	if p.RequireNonRoot || annotationDigests != nil {
		rules = append(rules, configRule(pod, o.Images, p.RequireNonRoot, annotationDigests))
	}

	doc := kvPolicy{
		APIVersion: "kyverno.io/v1",
		Kind:       "ClusterPolicy",
		Metadata: kvMetadata{Name: name, Annotations: map[string]string{
			"policies.kyverno.io/title":       "slipway verify",
			"policies.kyverno.io/description": "Generated by slipway policy export from the policy block slipway verify enforces.",
		}},
		Spec: kvSpec{
			Background:            false,
			WebhookTimeoutSeconds: 30,
			Rules:                 rules,
		},
	}
	var buf bytes.Buffer
	buf.WriteString("# Generated by `slipway policy export --format kyverno` (Kyverno v1.19 ClusterPolicy).\n")
	for _, d := range r.Dropped {
		fmt.Fprintf(&buf, "# WEAKER than slipway verify: left out policy.%s\n", d)
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("kyverno: encoding: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("kyverno: encoding: %w", err)
	}
	r.YAML = buf.Bytes()
	return r, nil
}

// distinctKeys returns each key once, as a PEM "PUBLIC KEY" block, however
// it was encoded (slipway counts a key given twice once; so must count).
func distinctKeys(keys []Key) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for i, k := range keys {
		b, rest := pem.Decode([]byte(k.PEM))
		if b == nil || b.Type != "PUBLIC KEY" || strings.TrimSpace(string(rest)) != "" {
			return nil, fmt.Errorf("kyverno: keys[%d] (%s) is not one PEM PUBLIC KEY block", i, k.Ref)
		}
		if seen[string(b.Bytes)] {
			continue
		}
		seen[string(b.Bytes)] = true
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b.Bytes})))
	}
	return out, nil
}

func distinctIdentities(ids []Identity) []Identity {
	var out []Identity
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// anchored is how slipway compiles an identity regexp (sign's
// wrapAnchored): the whole value must match, even with alternations.
func anchored(re string) string {
	if re == "" {
		return ""
	}
	return "^(?:" + re + ")$"
}

// severities are slipway's severities by rank (scan.Severity.Rank).
var severities = []string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// jsonLiteral is v as a JMESPath JSON literal.
func jsonLiteral(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings and string slices always marshal
	}
	return "`" + string(b) + "`"
}

// vulnConditions are the conditions over the Trivy-shaped vuln predicate
// (sign.VulnPredicate) that deny what slipway verify denies: an
// unreadable predicate, an unsuppressed finding at or above MaxSeverity,
// a suppressed one whose suppression expired, a scan older than MaxScanAge
// or more than five minutes in the future. Kyverno adds the predicate
// itself to the context, so paths start at its fields.
func vulnConditions(p Policy) ([]kvCondition, error) {
	const (
		vulns      = "scanner.result.Results[].Vulnerabilities[]"
		suppressed = "(slipway.suppressed || `[]`)"
	)
	conds := []kvCondition{
		{Key: "{{ type(scanner.result.Results) }}", Operator: "Equals", Value: "array",
			Message: "the vuln attestation's scanner.result has no Results array (not a Trivy report)"},
		{Key: "{{ length(" + vulns + " | [?type(VulnerabilityID) != 'string' || VulnerabilityID == '']) }}", Operator: "Equals", Value: 0,
			Message: "a vulnerability in the vuln attestation has no VulnerabilityID"},
		{Key: "{{ length(" + suppressed + "[?type(vulnerability.VulnerabilityID) != 'string' || vulnerability.VulnerabilityID == '']) }}", Operator: "Equals", Value: 0,
			Message: "a suppressed vulnerability in the vuln attestation has no VulnerabilityID"},
	}
	if p.MaxSeverity != "" {
		sev := strings.ToUpper(strings.TrimSpace(p.MaxSeverity))
		rank := slices.Index(severities, sev)
		if rank < 0 {
			return nil, fmt.Errorf("kyverno: unknown max severity %q", p.MaxSeverity)
		}
		// UNKNOWN ranks lowest: every finding counts, whatever its
		// severity string. Otherwise, slipway upper-cases the severity
		// and an unknown string ranks as UNKNOWN.
		// slipway counts a suppression expired when now >= expiresAt;
		// time_now_utc has whole seconds, so "expiresAt before now+1s"
		// counts at least as much (up to a second early, never late).
		expired := "expiresAt && expiresAt != '0001-01-01T00:00:00Z' && time_before(expiresAt, time_add(time_now_utc(), '1s'))"
		unsup, sup := vulns, suppressed+"[?"+expired+"]"
		if rank > 0 {
			set := jsonLiteral(severities[rank:])
			unsup = vulns + " | [?contains(" + set + ", to_upper(Severity || ''))]"
			sup = suppressed + "[?" + expired + " && contains(" + set + ", to_upper(vulnerability.Severity || ''))]"
		}
		conds = append(conds,
			kvCondition{Key: "{{ length(" + unsup + ") }}", Operator: "Equals", Value: 0,
				Message: fmt.Sprintf("the vuln attestation lists a finding at or above %s (max_severity)", sev)},
			kvCondition{Key: "{{ length(" + sup + ") }}", Operator: "Equals", Value: 0,
				Message: fmt.Sprintf("the vuln attestation holds a finding at or above %s whose suppression expired (max_severity)", sev)},
		)
	}
	if p.MaxScanAge > 0 {
		conds = append(conds,
			kvCondition{Key: "{{ time_since('', metadata.scanFinishedOn, '') }}", Operator: "LessThanOrEquals", Value: p.MaxScanAge.String(),
				Message: fmt.Sprintf("the vulnerability scan finished longer than %s ago (max_scan_age): rescan and re-attest the image", p.MaxScanAge)},
			kvCondition{Key: "{{ time_since('', metadata.scanFinishedOn, '') }}", Operator: "GreaterThanOrEquals", Value: kyvernoFutureSkew,
				Message: "the vulnerability scan finish time is in the future"},
		)
	}
	return conds, nil
}

// splitDigests returns the sha256 hex digests (provenance records
// digest.sha256) and the full "algorithm:hex" strings (annotations hold
// those) of the allowed base digests.
func splitDigests(ds []string) (hexes, full []string, err error) {
	for _, d := range ds {
		alg, hex, ok := strings.Cut(d, ":")
		if !ok || alg == "" || hex == "" || strings.ContainsAny(d, "'`\"\\") {
			return nil, nil, fmt.Errorf("kyverno: allowed base digest %q is not algorithm:hex", d)
		}
		if alg == "sha256" {
			hexes = append(hexes, hex)
		}
		full = append(full, d)
	}
	if hexes == nil {
		hexes = []string{}
	}
	return hexes, full, nil
}

// baseConditions deny a provenance without a base image or with one whose
// sha256 digest is not allowed (a base without a sha256 digest included).
func baseConditions(hexes []string) []kvCondition {
	const deps = "buildDefinition.resolvedDependencies"
	base := "name == '" + baseImageDependency + "'"
	return []kvCondition{
		{Key: "{{ length(" + deps + "[?" + base + "]) }}", Operator: "GreaterThanOrEquals", Value: 1,
			Message: "the provenance records no base image (allowed_base_digests)"},
		{Key: "{{ length(" + deps + "[?" + base + " && !contains(" + jsonLiteral(hexes) + ", digest.sha256)]) }}", Operator: "Equals", Value: 0,
			Message: "the provenance records a base image that is not an allowed base digest (allowed_base_digests)"},
	}
}

// runsAsRootRegexp matches the config users sign.RunsAsRoot calls root
// (Kyverno's regex_match is Go's regexp.Match): leading and trailing
// spaces (unicode.IsSpace: ASCII spaces, U+0085 and the Z categories)
// trimmed, then before the first colon "", "root", or a number equal to 0.
const runsAsRootRegexp = `(?s)^[\t\n\v\f\r\x{85}\p{Z}]*(root|0*)([\t\n\v\f\r\x{85}\p{Z}]*|:.*)$`

// configRule is the validate rule that reads what slipway verify reads of
// the image itself: the config user of every platform
// (require_non_root) and the base digest annotations of the index and of
// every platform manifest (allowed_base_digests). It runs on each
// container, init container and ephemeral container whose image matches
// the policy's image references, after verifyImages pinned it to the
// verified digest.
func configRule(match kvMatch, images []string, nonRoot bool, allowed []string) kvRule {
	var globs []string
	for _, g := range images {
		globs = append(globs, "pattern_match('"+g+"', image_normalize(image))")
	}
	// The pipe matters: "X[][?f]" would filter inside each container.
	containers := "[request.object.spec.containers, request.object.spec.initContainers, request.object.spec.ephemeralContainers][]" +
		" | [?image && (" + strings.Join(globs, " || ") + ")]"
	var isImage []string
	for _, mt := range imageManifestTypes {
		isImage = append(isImage, "mediaType == '"+mt+"'")
	}
	// An index's runnable children, or the image itself.
	platforms := "slipwayImage.manifestList.manifests[?" + strings.Join(isImage, " || ") + "].digest || [split(slipwayImage.resolvedImage, '@')[1]]"

	conds := []kvCondition{{
		Key: "{{ length(slipwayImage.manifestList.manifests || `[]`) }}", Operator: "GreaterThan", Value: maxChildManifests,
		Message: fmt.Sprintf("the image index has more than %d manifests", maxChildManifests),
	}}
	if nonRoot {
		conds = append(conds, kvCondition{
			Key: "{{ regex_match('" + runsAsRootRegexp + "', slipwayPlatform.configData.config.User || '') }}", Operator: "Equals", Value: true,
			Message: "the image runs as root: its config user is empty, root or 0 (require_non_root)",
		})
	}
	if allowed != nil {
		list := jsonLiteral(allowed)
		for _, where := range []string{"slipwayImage.manifestList", "slipwayPlatform.manifest"} {
			ann := where + ".annotations"
			conds = append(conds, kvCondition{
				Key:      "{{ contains(keys(" + ann + " || `{}`), '" + annotationBaseDigest + "') && !contains(" + list + ", " + ann + ".\"" + annotationBaseDigest + "\") }}",
				Operator: "Equals", Value: true,
				Message: "the image records a base image (" + annotationBaseDigest + ") that is not an allowed base digest (allowed_base_digests)",
			})
		}
	}
	return kvRule{
		Name:  "slipway-image-config",
		Match: match,
		Validate: &kvValidate{
			FailureAction: "Enforce",
			Message:       "slipway policy: the image's config or annotations are not allowed",
			ForEach: []kvForEach{{
				List:    containers,
				Context: []kvContext{{Name: "slipwayImage", ImageRegistry: &kvImageRegistry{Reference: "{{ element.image }}"}}},
				ForEach: []kvForEach{{
					List: platforms,
					Context: []kvContext{{Name: "slipwayPlatform", ImageRegistry: &kvImageRegistry{
						Reference: "{{ split(slipwayImage.resolvedImage, '@')[0] }}@{{ element }}"}}},
					Deny: &kvDeny{Conditions: kvAnyAll{Any: conds}},
				}},
			}},
		},
	}
}

func allOf(c []kvCondition) []kvAnyAll {
	if len(c) == 0 {
		return nil
	}
	return []kvAnyAll{{All: c}}
}

// The Kyverno v1 ClusterPolicy schema, the part the export writes
// (github.com/kyverno/kyverno api/kyverno/v1).
type kvPolicy struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   kvMetadata `yaml:"metadata"`
	Spec       kvSpec     `yaml:"spec"`
}

type kvMetadata struct {
	Name        string            `yaml:"name"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

type kvSpec struct {
	Background            bool     `yaml:"background"`
	WebhookTimeoutSeconds int      `yaml:"webhookTimeoutSeconds"`
	Rules                 []kvRule `yaml:"rules"`
}

type kvRule struct {
	Name         string                `yaml:"name"`
	Match        kvMatch               `yaml:"match"`
	VerifyImages []kvImageVerification `yaml:"verifyImages,omitempty"`
	Validate     *kvValidate           `yaml:"validate,omitempty"`
}

type kvMatch struct {
	Any []kvMatchResources `yaml:"any"`
}

type kvMatchResources struct {
	Resources kvResources `yaml:"resources"`
}

type kvResources struct {
	Kinds []string `yaml:"kinds"`
}

type kvImageVerification struct {
	Type            string          `yaml:"type"`
	FailureAction   string          `yaml:"failureAction"`
	ImageReferences []string        `yaml:"imageReferences"`
	MutateDigest    bool            `yaml:"mutateDigest"`
	VerifyDigest    bool            `yaml:"verifyDigest"`
	Required        bool            `yaml:"required"`
	Attestations    []kvAttestation `yaml:"attestations,omitempty"`
}

type kvAttestation struct {
	Type       string          `yaml:"type"`
	Attestors  []kvAttestorSet `yaml:"attestors"`
	Conditions []kvAnyAll      `yaml:"conditions,omitempty"`
}

type kvAttestorSet struct {
	Count   int          `yaml:"count"`
	Entries []kvAttestor `yaml:"entries"`
}

type kvAttestor struct {
	Keys    *kvKeys    `yaml:"keys,omitempty"`
	Keyless *kvKeyless `yaml:"keyless,omitempty"`
}

type kvKeys struct {
	PublicKeys string   `yaml:"publicKeys"`
	Rekor      *kvRekor `yaml:"rekor,omitempty"`
	CTLog      *kvCTLog `yaml:"ctlog,omitempty"`
}

type kvKeyless struct {
	Issuer        string   `yaml:"issuer,omitempty"`
	IssuerRegExp  string   `yaml:"issuerRegExp,omitempty"`
	Subject       string   `yaml:"subject,omitempty"`
	SubjectRegExp string   `yaml:"subjectRegExp,omitempty"`
	Rekor         *kvRekor `yaml:"rekor,omitempty"`
	CTLog         *kvCTLog `yaml:"ctlog,omitempty"`
}

type kvRekor struct {
	URL        string `yaml:"url"`
	IgnoreTlog bool   `yaml:"ignoreTlog"`
}

type kvCTLog struct {
	IgnoreSCT bool `yaml:"ignoreSCT"`
}

type kvAnyAll struct {
	Any []kvCondition `yaml:"any,omitempty"`
	All []kvCondition `yaml:"all,omitempty"`
}

type kvCondition struct {
	Key      string `yaml:"key"`
	Operator string `yaml:"operator"`
	Value    any    `yaml:"value"`
	Message  string `yaml:"message,omitempty"`
}

type kvValidate struct {
	FailureAction string      `yaml:"failureAction"`
	Message       string      `yaml:"message"`
	ForEach       []kvForEach `yaml:"foreach"`
}

type kvForEach struct {
	List    string      `yaml:"list"`
	Context []kvContext `yaml:"context,omitempty"`
	Deny    *kvDeny     `yaml:"deny,omitempty"`
	ForEach []kvForEach `yaml:"foreach,omitempty"`
}

type kvContext struct {
	Name          string           `yaml:"name"`
	ImageRegistry *kvImageRegistry `yaml:"imageRegistry,omitempty"`
}

type kvImageRegistry struct {
	Reference string `yaml:"reference"`
}

type kvDeny struct {
	Conditions kvAnyAll `yaml:"conditions"`
}
