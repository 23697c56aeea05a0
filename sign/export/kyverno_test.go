package export

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/sign"
)

func testKey(t *testing.T) Key {
	t.Helper()
	return Key{PEM: testKeyPEM(t), Ref: "cosign.pub"} // clusterimagepolicy_test.go
}

// rewrapped is k's PEM with the base64 on one line: the same key, other
// bytes.
func rewrapped(t *testing.T, k Key) Key {
	t.Helper()
	b, _ := pem.Decode([]byte(k.PEM))
	return Key{PEM: "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(b.Bytes) + "\n-----END PUBLIC KEY-----\n", Ref: "again.pub"}
}

// doc is the exported YAML decoded generically.
type doc = map[string]any

func export(t *testing.T, p Policy, o Options) (*Result, doc) {
	t.Helper()
	if o.Images == nil {
		o.Images = []string{"registry.example/app*"}
	}
	r, err := Kyverno(p, o)
	if err != nil {
		t.Fatalf("Kyverno: %v", err)
	}
	var d doc
	if err := yaml.Unmarshal(r.YAML, &d); err != nil {
		t.Fatalf("exported YAML does not parse: %v\n%s", err, r.YAML)
	}
	return r, d
}

// at walks d by map keys and list indexes ("spec", "rules", "0", ...).
func at(t *testing.T, d any, path ...string) any {
	t.Helper()
	cur := d
	for i, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				t.Fatalf("no %q at %s", p, strings.Join(path[:i], "."))
			}
			cur = v
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(c) {
				t.Fatalf("no index %q at %s (len %d)", p, strings.Join(path[:i], "."), len(c))
			}
			cur = c[n]
		default:
			t.Fatalf("%s is a %T, not a map or list", strings.Join(path[:i], "."), cur)
		}
	}
	return cur
}

func has(d any, key string) bool {
	m, ok := d.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[key]
	return ok
}

// attestation returns the verifyImages attestation of predicate type pt.
func kyvAttestation(t *testing.T, d doc, pt string) map[string]any {
	t.Helper()
	for _, a := range at(t, d, "spec", "rules", "0", "verifyImages", "0", "attestations").([]any) {
		if m := a.(map[string]any); m["type"] == pt {
			return m
		}
	}
	t.Fatalf("no attestation of type %s", pt)
	return nil
}

func hasAttestation(t *testing.T, d doc, pt string) bool {
	for _, a := range at(t, d, "spec", "rules", "0", "verifyImages", "0", "attestations").([]any) {
		if a.(map[string]any)["type"] == pt {
			return true
		}
	}
	return false
}

// conditionKeys lists the keys of an attestation's conditions.
func conditionKeys(t *testing.T, a map[string]any) []string {
	var keys []string
	for _, c := range at(t, a, "conditions", "0", "all").([]any) {
		keys = append(keys, c.(map[string]any)["key"].(string))
	}
	return keys
}

func TestKyvernoKey(t *testing.T) {
	k := testKey(t)
	r, d := export(t, Policy{Keys: []Key{k}}, Options{Images: []string{"127.0.0.1:5000/app:*", "127.0.0.1:5000/app@*"}})
	if len(r.Dropped) != 0 {
		t.Errorf("Dropped = %v", r.Dropped)
	}
	want := doc{"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy"}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s = %v, want %v", k, d[k], v)
		}
	}
	if got := at(t, d, "metadata", "name"); got != "slipway" {
		t.Errorf("name = %v", got)
	}
	if got := at(t, d, "spec", "background"); got != false {
		t.Errorf("background = %v, want false (verifyImages acts on admission)", got)
	}
	rules := at(t, d, "spec", "rules").([]any)
	if len(rules) != 1 {
		t.Fatalf("%d rules, want 1 (no image config rule without require_non_root or allowed_base_digests)", len(rules))
	}
	if got := at(t, d, "spec", "rules", "0", "match", "any", "0", "resources", "kinds"); !cmp.Equal(got, []any{"Pod"}) {
		t.Errorf("match kinds = %v", got)
	}
	iv := at(t, d, "spec", "rules", "0", "verifyImages", "0").(map[string]any)
	for k, v := range map[string]any{"type": "SigstoreBundle", "failureAction": "Enforce", "mutateDigest": true, "verifyDigest": true, "required": true} {
		if iv[k] != v {
			t.Errorf("verifyImages.%s = %v, want %v", k, iv[k], v)
		}
	}
	if diff := cmp.Diff([]any{"127.0.0.1:5000/app:*", "127.0.0.1:5000/app@*"}, iv["imageReferences"]); diff != "" {
		t.Errorf("imageReferences (-want +got):\n%s", diff)
	}
	if has(iv, "attestors") {
		t.Error("image-level attestors: Kyverno's SigstoreBundle signature check counts any bundle, attestations included; signatures must be checked as PredicateSign attestations")
	}
	atts := iv["attestations"].([]any)
	if len(atts) != 1 {
		t.Fatalf("%d attestations, want only the signature one", len(atts))
	}
	sig := kyvAttestation(t, d, PredicateSign)
	if has(sig, "conditions") {
		t.Error("the signature attestation has conditions")
	}
	set := at(t, sig, "attestors", "0").(map[string]any)
	if set["count"] != 1 {
		t.Errorf("count = %v, want 1", set["count"])
	}
	entry := at(t, set, "entries", "0", "keys").(map[string]any)
	if entry["publicKeys"] != k.PEM {
		t.Errorf("publicKeys = %q, want the PEM", entry["publicKeys"])
	}
	if diff := cmp.Diff(map[string]any{"url": publicRekor, "ignoreTlog": true}, entry["rekor"]); diff != "" {
		t.Errorf("rekor (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"ignoreSCT": true}, entry["ctlog"]); diff != "" {
		t.Errorf("ctlog (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(r.YAML), "# Generated by") {
		t.Errorf("no header comment:\n%s", r.YAML)
	}
}

func TestKyvernoName(t *testing.T) {
	_, d := export(t, Policy{Keys: []Key{testKey(t)}}, Options{Name: "prod-images"})
	if got := at(t, d, "metadata", "name"); got != "prod-images" {
		t.Errorf("name = %v", got)
	}
}

func TestKyvernoThresholdAndIdentities(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	ids := []Identity{
		{Issuer: "https://token.actions.githubusercontent.com", SubjectRegexp: "^https://github.com/org/.*$"},
		{IssuerRegexp: "^https://a$|^https://b$", Subject: "ci@example.com"},
	}
	p := Policy{
		// k1 twice, in two encodings, and an identity twice: each counts
		// once, as in slipway verify.
		Keys:       []Key{k1, k2, rewrapped(t, k1)},
		Identities: append(ids, ids[0]),
		Threshold:  2,
	}
	_, d := export(t, p, Options{})
	set := at(t, kyvAttestation(t, d, PredicateSign), "attestors", "0").(map[string]any)
	if set["count"] != 2 {
		t.Errorf("count = %v, want 2", set["count"])
	}
	entries := set["entries"].([]any)
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4 (2 distinct keys, 2 distinct identities)", len(entries))
	}
	if got := at(t, entries[1], "keys", "publicKeys"); got != k2.PEM {
		t.Errorf("second key = %v", got)
	}
	wantKeyless := []map[string]any{
		{"issuer": ids[0].Issuer, "subjectRegExp": "^(?:^https://github.com/org/.*$)$",
			"rekor": map[string]any{"url": publicRekor, "ignoreTlog": true}, "ctlog": map[string]any{"ignoreSCT": false}},
		{"issuerRegExp": "^(?:^https://a$|^https://b$)$", "subject": "ci@example.com",
			"rekor": map[string]any{"url": publicRekor, "ignoreTlog": true}, "ctlog": map[string]any{"ignoreSCT": false}},
	}
	for i, w := range wantKeyless {
		if diff := cmp.Diff(any(w), at(t, entries[2+i], "keyless")); diff != "" {
			t.Errorf("keyless %d (-want +got):\n%s", i, diff)
		}
	}

	// A threshold above the distinct signers is refused, as slipway
	// verify refuses it.
	p.Threshold = 5
	if _, err := Kyverno(p, Options{Images: []string{"x/*"}}); err == nil || !strings.Contains(err.Error(), "threshold 5") {
		t.Errorf("threshold 5 of 4: err = %v", err)
	}
	if _, err := Kyverno(Policy{Keys: []Key{k1, rewrapped(t, k1)}, Threshold: 2}, Options{Images: []string{"x/*"}}); err == nil {
		t.Error("threshold 2 over one key given twice: no error")
	}
}

func TestKyvernoRequireTlog(t *testing.T) {
	p := Policy{Keys: []Key{testKey(t)}, Identities: []Identity{{Issuer: "https://i", Subject: "s"}}, RequireTlog: true}
	_, d := export(t, p, Options{})
	entries := at(t, kyvAttestation(t, d, PredicateSign), "attestors", "0", "entries").([]any)
	// Keys: the log checked (ignoreTlog false) with its time as the
	// observer timestamp (ignoreSCT false: the bundle verifier refuses a
	// log without a time source).
	if diff := cmp.Diff(map[string]any{"url": publicRekor, "ignoreTlog": false}, at(t, entries[0], "keys", "rekor")); diff != "" {
		t.Errorf("key rekor (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"ignoreSCT": false}, at(t, entries[0], "keys", "ctlog")); diff != "" {
		t.Errorf("key ctlog (-want +got):\n%s", diff)
	}
	if got := at(t, entries[1], "keyless", "rekor", "ignoreTlog"); got != false {
		t.Errorf("keyless ignoreTlog = %v", got)
	}
}

func TestKyvernoAttestations(t *testing.T) {
	p := Policy{Keys: []Key{testKey(t)}, RequireAttestations: []string{"vuln", "provenance"}}
	_, d := export(t, p, Options{})
	for _, pt := range []string{PredicateVuln, PredicateProvenance} {
		a := kyvAttestation(t, d, pt)
		if has(a, "conditions") {
			t.Errorf("%s: conditions without max_severity/max_scan_age/allowed_base_digests", pt)
		}
		if got := at(t, a, "attestors", "0", "count"); got != 1 {
			t.Errorf("%s: count = %v, want 1 (any trusted signer)", pt, got)
		}
	}
	if hasAttestation(t, d, PredicateSPDX) || hasAttestation(t, d, PredicateCycloneDX) {
		t.Error("SBOM attestation without require_attestations: sbom")
	}
}

func TestKyvernoMaxSeverity(t *testing.T) {
	for _, tc := range []struct {
		sev  string
		want string // the severity set of the findings condition, "" for every finding
	}{
		{"HIGH", "`[\"HIGH\",\"CRITICAL\"]`"},
		{"critical", "`[\"CRITICAL\"]`"},
		{"LOW", "`[\"LOW\",\"MEDIUM\",\"HIGH\",\"CRITICAL\"]`"},
		{"UNKNOWN", ""},
	} {
		t.Run(tc.sev, func(t *testing.T) {
			_, d := export(t, Policy{Keys: []Key{testKey(t)}, MaxSeverity: tc.sev}, Options{})
			keys := conditionKeys(t, kyvAttestation(t, d, PredicateVuln))
			joined := strings.Join(keys, "\n")
			for _, w := range []string{
				"{{ type(scanner.result.Results) }}",
				"scanner.result.Results[].Vulnerabilities[] | [?type(VulnerabilityID) != 'string' || VulnerabilityID == '']",
				"(slipway.suppressed || `[]`)[?type(vulnerability.VulnerabilityID) != 'string'",
				"time_before(expiresAt, time_add(time_now_utc(), '1s'))",
			} {
				if !strings.Contains(joined, w) {
					t.Errorf("no condition with %q in\n%s", w, joined)
				}
			}
			if tc.want != "" {
				for _, w := range []string{
					"{{ length(scanner.result.Results[].Vulnerabilities[] | [?contains(" + tc.want + ", to_upper(Severity || ''))]) }}",
					"contains(" + tc.want + ", to_upper(vulnerability.Severity || ''))",
				} {
					if !strings.Contains(joined, w) {
						t.Errorf("no condition %q in\n%s", w, joined)
					}
				}
			} else {
				if !slices.Contains(keys, "{{ length(scanner.result.Results[].Vulnerabilities[]) }}") {
					t.Errorf("UNKNOWN: no condition counting every finding in\n%s", joined)
				}
			}
			if strings.Contains(joined, "time_since") {
				t.Error("scan age condition without max_scan_age")
			}
		})
	}
	if _, err := Kyverno(Policy{Keys: []Key{testKey(t)}, MaxSeverity: "SEVERE"}, Options{Images: []string{"x/*"}}); err == nil {
		t.Error("unknown severity: no error")
	}
}

func TestKyvernoMaxScanAge(t *testing.T) {
	_, d := export(t, Policy{Keys: []Key{testKey(t)}, MaxScanAge: 36 * time.Hour}, Options{})
	var got []map[string]any
	for _, c := range at(t, kyvAttestation(t, d, PredicateVuln), "conditions", "0", "all").([]any) {
		m := c.(map[string]any)
		if strings.Contains(m["key"].(string), "time_since") {
			delete(m, "message")
			got = append(got, m)
		}
	}
	want := []map[string]any{
		{"key": "{{ time_since('', metadata.scanFinishedOn, '') }}", "operator": "LessThanOrEquals", "value": "36h0m0s"},
		{"key": "{{ time_since('', metadata.scanFinishedOn, '') }}", "operator": "GreaterThanOrEquals", "value": "-5m0s"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scan age conditions (-want +got):\n%s", diff)
	}
}

func TestKyvernoAllowedBaseDigests(t *testing.T) {
	h1, h2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	_, d := export(t, Policy{Keys: []Key{testKey(t)}, AllowedBaseDigests: []string{"sha256:" + h1, "sha256:" + h2}}, Options{})
	keys := conditionKeys(t, kyvAttestation(t, d, PredicateProvenance))
	want := []string{
		"{{ length(buildDefinition.resolvedDependencies[?name == 'base-image']) }}",
		"{{ length(buildDefinition.resolvedDependencies[?name == 'base-image' && !contains(`[\"" + h1 + "\",\"" + h2 + "\"]`, digest.sha256)]) }}",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("provenance conditions (-want +got):\n%s", diff)
	}
	// The annotations slipway also reads, on the index and on every
	// platform manifest.
	rule := at(t, d, "spec", "rules", "1").(map[string]any)
	if rule["name"] != "slipway-image-config" {
		t.Fatalf("second rule = %v", rule["name"])
	}
	var deny []string
	for _, c := range at(t, rule, "validate", "foreach", "0", "foreach", "0", "deny", "conditions", "any").([]any) {
		deny = append(deny, c.(map[string]any)["key"].(string))
	}
	joined := strings.Join(deny, "\n")
	for _, w := range []string{
		"!contains(`[\"sha256:" + h1 + "\",\"sha256:" + h2 + "\"]`, slipwayImage.manifestList.annotations.\"org.opencontainers.image.base.digest\")",
		"!contains(`[\"sha256:" + h1 + "\",\"sha256:" + h2 + "\"]`, slipwayPlatform.manifest.annotations.\"org.opencontainers.image.base.digest\")",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("no deny condition with %q in\n%s", w, joined)
		}
	}
	if strings.Contains(joined, "regex_match") {
		t.Error("non-root condition without require_non_root")
	}
	if _, err := Kyverno(Policy{Keys: []Key{testKey(t)}, AllowedBaseDigests: []string{"nocolon"}}, Options{Images: []string{"x/*"}}); err == nil {
		t.Error("malformed allowed digest: no error")
	}
}

func TestKyvernoRequireNonRoot(t *testing.T) {
	_, d := export(t, Policy{Keys: []Key{testKey(t)}, RequireNonRoot: true}, Options{Images: []string{"127.0.0.1:5000/*", "ghcr.io/org/app"}})
	rule := at(t, d, "spec", "rules", "1").(map[string]any)
	outer := at(t, rule, "validate", "foreach", "0").(map[string]any)
	wantList := "[request.object.spec.containers, request.object.spec.initContainers, request.object.spec.ephemeralContainers][]" +
		" | [?image && (pattern_match('127.0.0.1:5000/*', image_normalize(image)) || pattern_match('ghcr.io/org/app', image_normalize(image)))]"
	if outer["list"] != wantList {
		t.Errorf("containers list = %v\nwant %v", outer["list"], wantList)
	}
	if got := at(t, outer, "context", "0", "imageRegistry", "reference"); got != "{{ element.image }}" {
		t.Errorf("image context = %v", got)
	}
	inner := at(t, outer, "foreach", "0").(map[string]any)
	if !strings.Contains(inner["list"].(string), "mediaType == 'application/vnd.oci.image.manifest.v1+json' || mediaType == 'application/vnd.docker.distribution.manifest.v2+json'") {
		t.Errorf("platform list = %v", inner["list"])
	}
	var keys []string
	for _, c := range at(t, inner, "deny", "conditions", "any").([]any) {
		keys = append(keys, c.(map[string]any)["key"].(string))
	}
	want := []string{
		"{{ length(slipwayImage.manifestList.manifests || `[]`) }}",
		"{{ regex_match('" + runsAsRootRegexp + "', slipwayPlatform.configData.config.User || '') }}",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("deny conditions (-want +got):\n%s", diff)
	}
	if hasAttestation(t, d, PredicateProvenance) {
		t.Error("provenance attestation without allowed_base_digests")
	}
}

// runsAsRoot is the reference the regexp must agree with: slipway
// verify's own test.
var runsAsRoot = sign.RunsAsRoot

func TestRunsAsRootRegexp(t *testing.T) {
	re := regexp.MustCompile(runsAsRootRegexp)
	users := []string{"", " ", "root", "0", "00", "0:0", "root:staff", " root ", "\troot\n", "0 :x", "root :x", ":", ":x",
		"1000", "1000:1000", "nobody", "rooty", "xroot", "0x0", "-0", "+0", "0\u00a0", "\u3000root", "0\u00a0:x", "root\u2028",
		"app:root", "10", "01", "0\n:x", "\n", "0:", "root:"}
	for _, u := range users {
		if got, want := re.MatchString(u), runsAsRoot(u); got != want {
			t.Errorf("user %q: regexp says root=%v, RunsAsRoot says %v", u, got, want)
		}
	}
	// And a sweep over short strings of the interesting characters.
	alphabet := []string{"", "0", "1", "r", "o", "t", ":", " ", "\t", "\u00a0", "x"}
	for _, a := range alphabet {
		for _, b := range alphabet {
			for _, c := range alphabet {
				for _, e := range alphabet {
					u := a + b + c + e
					if got, want := re.MatchString(u), runsAsRoot(u); got != want {
						t.Errorf("user %q: regexp says root=%v, RunsAsRoot says %v", u, got, want)
					}
				}
			}
		}
	}
	for _, u := range []string{"root", "rootroot", "root0"} {
		if got, want := re.MatchString(u), runsAsRoot(u); got != want {
			t.Errorf("user %q: regexp says root=%v, RunsAsRoot says %v", u, got, want)
		}
	}
}

// TestKyvernoNamesMatchSlipway pins the names the policy reads to the ones
// slipway writes.
func TestKyvernoNamesMatchSlipway(t *testing.T) {
	if baseImageDependency != sign.BaseImageDependency {
		t.Errorf("base image dependency %q, slipway writes %q", baseImageDependency, sign.BaseImageDependency)
	}
	if annotationBaseDigest != build.AnnotationBaseDigest {
		t.Errorf("base digest annotation %q, slipway writes %q", annotationBaseDigest, build.AnnotationBaseDigest)
	}
	if PredicateSign != sign.SignPredicateType {
		t.Errorf("sign predicate %q, slipway writes %q", PredicateSign, sign.SignPredicateType)
	}
	for pt, kind := range map[string]string{PredicateVuln: "vuln", PredicateProvenance: "provenance"} {
		if got := sign.KindOf(pt); got != kind {
			t.Errorf("sign.KindOf(%s) = %q, want %q", pt, got, kind)
		}
	}
}

func TestKyvernoUnsupported(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	id := Identity{Issuer: "https://issuer", Subject: "me@example.com"}
	for _, tc := range []struct {
		name   string
		p      Policy
		rules  []string // the rules named, in order
		absent []string // what the weaker policy leaves out
	}{
		{"timestamp", Policy{Keys: []Key{k1}, RequireTimestamp: true}, []string{"require_timestamp"}, nil},
		{"custom root for identities", Policy{Identities: []Identity{id}, TrustedRoot: []byte(`{}`)}, []string{"trusted_root"}, nil},
		{"custom root for the log", Policy{Keys: []Key{k1}, RequireTlog: true, TrustedRoot: []byte(`{}`)}, []string{"trusted_root"}, nil},
		{"sbom", Policy{Keys: []Key{k1}, RequireAttestations: []string{"sbom", "vuln"}}, []string{"require_attestations"}, []string{PredicateSPDX, PredicateCycloneDX}},
		{"severity with two signers", Policy{Keys: []Key{k1, k2}, MaxSeverity: "HIGH", MaxScanAge: time.Hour}, []string{"max_severity", "max_scan_age"}, []string{"Vulnerabilities", "time_since", PredicateVuln}},
		{"base digests with two signers", Policy{Keys: []Key{k1}, Identities: []Identity{id}, AllowedBaseDigests: []string{"sha256:" + strings.Repeat("c", 64)}},
			[]string{"allowed_base_digests"}, []string{"resolvedDependencies", PredicateProvenance, "slipway-image-config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Kyverno(tc.p, Options{Images: []string{"x/*"}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want *UnsupportedError", err)
			}
			if ue.Rule != tc.rules[0] || ue.Target != TargetKyverno || ue.Why == "" {
				t.Errorf("UnsupportedError = %+v, want rule %s, target %s", ue, tc.rules[0], TargetKyverno)
			}
			if !strings.Contains(err.Error(), "policy."+tc.rules[0]) || !strings.Contains(err.Error(), TargetKyverno) {
				t.Errorf("message %q names neither rule nor target", err)
			}

			r, err := Kyverno(tc.p, Options{Images: []string{"x/*"}, AllowWeaker: true})
			if err != nil {
				t.Fatalf("AllowWeaker: %v", err)
			}
			if len(r.Dropped) != len(tc.rules) {
				t.Fatalf("Dropped = %q, want %d entries for %v", r.Dropped, len(tc.rules), tc.rules)
			}
			for i, rule := range tc.rules {
				if !strings.HasPrefix(r.Dropped[i], rule+": ") {
					t.Errorf("Dropped[%d] = %q, want %q first", i, r.Dropped[i], rule)
				}
				if !strings.Contains(string(r.YAML), "# WEAKER than slipway verify: left out policy."+rule+": ") {
					t.Errorf("the YAML does not say it left out %s:\n%s", rule, r.YAML)
				}
			}
			var body strings.Builder
			for _, l := range strings.Split(string(r.YAML), "\n") {
				if !strings.HasPrefix(l, "#") {
					body.WriteString(l + "\n")
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(body.String(), a) {
					t.Errorf("the weaker policy still holds %q", a)
				}
			}
			var d doc
			if err := yaml.Unmarshal(r.YAML, &d); err != nil {
				t.Fatalf("weaker YAML does not parse: %v", err)
			}
			// Signatures are never dropped.
			if got := at(t, kyvAttestation(t, d, PredicateSign), "attestors", "0", "entries"); len(got.([]any)) == 0 {
				t.Error("no signers left")
			}
		})
	}
}

func TestKyvernoInvalid(t *testing.T) {
	k := testKey(t)
	for _, tc := range []struct {
		name string
		p    Policy
		o    Options
	}{
		{"no images", Policy{Keys: []Key{k}}, Options{}},
		{"quote in image", Policy{Keys: []Key{k}}, Options{Images: []string{"x/'a"}}},
		{"no signers", Policy{}, Options{Images: []string{"x/*"}}},
		{"not a key", Policy{Keys: []Key{{PEM: "hello", Ref: "k"}}}, Options{Images: []string{"x/*"}}},
		{"two blocks", Policy{Keys: []Key{{PEM: k.PEM + k.PEM, Ref: "k"}}}, Options{Images: []string{"x/*"}}},
		{"negative threshold", Policy{Keys: []Key{k}, Threshold: -1}, Options{Images: []string{"x/*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Kyverno(tc.p, tc.o)
			if err == nil {
				t.Fatalf("no error; YAML:\n%s", r.YAML)
			}
			var ue *UnsupportedError
			if errors.As(err, &ue) {
				t.Errorf("invalid input reported as unsupported: %v", err)
			}
		})
	}
}
