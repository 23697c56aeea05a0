package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/sigstack"
	"github.com/slipway-build/slipway/sign/export"
)

// policy-controller's tester (v0.13.1, cmd/tester) run against what
// slipway pushes. The tester compiles one ClusterImagePolicy (-policy),
// optionally loads one TrustRoot resource (-trustroot), verifies -image
// with the webhook's own code (pkg/policy, pkg/webhook) and exits 0 when
// the image is admitted; when it is not, it prints
// {"errors":[...],"warnings":[...]} on stdout and exits 1. An invalid
// policy or any other failure also exits 1 (log.Fatal, on stderr, nothing
// on stdout), so a denial is only counted when the errors JSON is there
// and names the reason the test expects.
//
// None of the policies here needs the public-good Sigstore: key
// authorities without ctlog skip the transparency log (IgnoreTlog), and the
// keyless authority takes its trust material from the TrustRoot resource
// (trustRootRef); anything else would reach for TUF and fail in the
// loopback-only namespace.

// vulnPredicateType is cosign's vuln predicate (`cosign attest --type
// vuln`), as a URI: policy-controller warns that the short names are
// deprecated.
const vulnPredicateType = "https://cosign.sigstore.dev/attestation/vuln/v1"

// trivyVulnRego is a vuln policy written for Trivy's `--format
// cosign-vuln` predicate, in the form policy-controller evaluates (cosign
// pkg/cosign/rego: package sigstore, rule isCompliant, a response object
// with result/error/warning): it denies any HIGH or CRITICAL finding in
// predicate.scanner.result.Results[].Vulnerabilities[] and names the
// findings. A predicate in another shape has no such path, finds nothing
// and passes: that is why the vuln image below must be denied.
const trivyVulnRego = `package sigstore

severe := {"HIGH", "CRITICAL"}

findings := {v.VulnerabilityID | v := input.predicate.scanner.result.Results[_].Vulnerabilities[_]; severe[v.Severity]}

isCompliant[response] {
  input.predicateType == "` + vulnPredicateType + `"
  count(findings) == 0
  response := {"result": true, "error": "", "warning": ""}
}

isCompliant[response] {
  input.predicateType == "` + vulnPredicateType + `"
  count(findings) > 0
  response := {"result": false, "error": sprintf("HIGH or CRITICAL vulnerabilities: %s", [concat(", ", findings)]), "warning": ""}
}
`

// trivyVulnCUE is the same policy in CUE, the other language
// policy-controller takes: every Severity under
// predicate.scanner.result.Results[].Vulnerabilities[] must be neither
// HIGH nor CRITICAL.
const trivyVulnCUE = `predicateType: "` + vulnPredicateType + `"
predicate: scanner: result: Results: [...{
	Vulnerabilities?: [...{Severity: !="HIGH" & !="CRITICAL"}]
}]
`

// indent prefixes every line of s with n spaces (for block scalars in the
// YAML below).
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// vulnPolicyAttestation is the attestations entry of an authority that
// applies policy (rego or cue) to cosign's vuln predicate.
func vulnPolicyAttestation(lang, policy string) string {
	return fmt.Sprintf(`    - name: no-high-or-critical
      predicateType: %s
      policy:
        type: %s
        data: |
%s
`, vulnPredicateType, lang, indent(policy, 10))
}

// keyVulnCIP is a ClusterImagePolicy for every image: one key authority
// (the PEM public key) whose vuln attestation must pass policy. A key
// authority reads cosign v2's legacy .att tag (policy-controller's bundle
// format is keyless only).
func keyVulnCIP(pubPEM, lang, policy string) string {
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: slipway-vuln
spec:
  images:
  - glob: "**"
  authorities:
  - name: slipway-key
    key:
      data: |
%s
    attestations:
%s`, indent(pubPEM, 8), vulnPolicyAttestation(lang, policy))
}

// testerVerdict is what the tester prints when it denies.
type testerVerdict struct {
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

// policyTester runs the tester on image with the policy (and trust root,
// if not empty) written to dir.
func policyTester(t *testing.T, bin, dir, cip, trustRoot, image string) result {
	t.Helper()
	args := []string{"-policy", writeFile(t, dir, "cip.yaml", cip), "-image", image}
	if trustRoot != "" {
		args = append(args, "-trustroot", writeFile(t, dir, "trustroot.yaml", trustRoot))
	}
	return runPeer(t, dir, bin, nil, args...)
}

// testerAllows fails the test unless the tester admits image.
func testerAllows(t *testing.T, bin, cip, trustRoot, image string) {
	t.Helper()
	if r := policyTester(t, bin, t.TempDir(), cip, trustRoot, image); r.code != 0 {
		t.Fatalf("policy-tester denied %s, want it admitted: %s\npolicy:\n%s", image, r, cip)
	}
}

// testerDenies fails the test unless the tester refuses image by policy:
// exit 1 with an errors report one of whose errors contains want.
func testerDenies(t *testing.T, bin, cip, trustRoot, image, want string) {
	t.Helper()
	r := policyTester(t, bin, t.TempDir(), cip, trustRoot, image)
	if r.code == 0 {
		t.Fatalf("policy-tester admitted %s, want a denial (%q): %s\npolicy:\n%s", image, want, r, cip)
	}
	var v testerVerdict
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &v); err != nil || len(v.Errors) == 0 {
		t.Fatalf("policy-tester failed without a verdict (not a policy denial): %s", r)
	}
	if !strings.Contains(strings.Join(v.Errors, "\n"), want) {
		t.Fatalf("policy-tester denied %s, but not for %q: %q\n%s", image, want, v.Errors, r)
	}
	t.Logf("policy-tester denied %s: %q", image, v.Errors)
}

// TestPolicyControllerVulnPolicy: a vuln policy written for Trivy's
// cosign-vuln predicate (Rego and CUE), behind a key authority holding
// slipway's public key, denies slipway's image with a HIGH finding (which
// slipway's own gate let through: scan.severity CRITICAL), admits the
// clean one, and denies both under an authority with another key.
func TestPolicyControllerVulnPolicy(t *testing.T) {
	tester := testutil.Peer(t, "policy-tester")
	testutil.RequireIsolated(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	priv, pub := demoKey(t, dir, "pw")
	cfg := pipelineConfig(reg.Host+"/team", db, priv, pub, filepath.Join(repoRoot(), "testdata", "vulnapp"), "abort")
	res := runLettingHighThrough(t, dir, cfg, "")
	vuln, hello := res["vuln"], res["hello"]
	if !vuln.Pushed || !hello.Pushed || len(vuln.Signatures) == 0 || len(hello.Signatures) == 0 || vuln.Findings["HIGH"] == 0 {
		t.Fatalf("want both targets pushed and signed, vuln with a HIGH finding: %+v", res)
	}

	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPub := demoKey(t, t.TempDir(), "pw")
	otherPEM, err := os.ReadFile(otherPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ lang, policy, want string }{
		{"rego", trivyVulnRego, "HIGH or CRITICAL vulnerabilities: CVE-2022-32149"},
		// CUE reports the conflicting value at its path.
		{"cue", trivyVulnCUE, `"HIGH"`},
	} {
		t.Run(p.lang, func(t *testing.T) {
			cip := keyVulnCIP(string(pubPEM), p.lang, p.policy)
			testerDenies(t, tester, cip, "", vuln.Ref, p.want)
			testerAllows(t, tester, cip, "", hello.Ref)
			wrongKey := keyVulnCIP(string(otherPEM), p.lang, p.policy)
			for _, ref := range []string{hello.Ref, vuln.Ref} {
				testerDenies(t, tester, wrongKey, "", ref, "attestation key validation failed")
			}
		})
	}
}

// trustRootResource is a policy-controller TrustRoot (v1alpha1,
// spec.sigstoreKeys: bring your own keys) named name, holding the stack's
// Fulcio chain as certificate authority and its TSA chain as timestamp
// authority, as the exporter writes it from the stack's trusted_root.json
// (export.TrustRoot). It has no tLogs and no ctLogs: the stack has
// neither.
func trustRootResource(t *testing.T, stack *sigstack.Stack, name string) string {
	t.Helper()
	raw, err := os.ReadFile(stack.TrustedRootPath)
	if err != nil {
		t.Fatal(err)
	}
	y, err := export.TrustRoot(raw, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

// keylessBundleCIP is a ClusterImagePolicy with one keyless authority
// reading Sigstore bundles (signatureFormat: bundle) and trusting the
// TrustRoot trustRoot for Fulcio and the TSA.
//
// What policy-controller v0.13.1 needs for that (pkg/webhook/validator.go
// checkOptsFromAuthority and ValidatePolicyAttestationsForAuthority), with
// what the tester answered on slipway's keyless image without each piece:
//   - signatureFormat: bundle is accepted for keyless authorities only;
//     the trusted material is the TrustRoot named by keyless.trustRootRef
//     (without it: the public-good root over TUF), passed to the tester
//     with -trustroot (without: "trustRootRef local-sigstore not found").
//   - rfc3161timestamp.trustRootRef must be the same TrustRoot; it makes
//     the verifier require a signed timestamp and skip the transparency
//     log, which the stack does not have (without: "not enough verified
//     log entries from transparency log: 0 < 1").
//   - insecureIgnoreSCT: the stack's Fulcio has no CT log, so its
//     certificates carry no SCT (without: "only able to verify 0 SCT
//     entries; unable to meet threshold of 1").
//   - keyless.url is not contacted on the bundle path, but attestations
//     are only read for keyless authorities with a url; when it is left
//     out, defaulting sets https://fulcio.sigstore.dev (measured: admitted
//     as well). It names the stack's Fulcio here.
//   - attestations must be listed: the bundle path goes through cosign
//     v2.5.0's VerifyImageAttestations (every bundle is a DSSE
//     attestation); an authority without attestations goes through
//     VerifyImageSignatures, which answers "bundle support for image
//     signatures is not yet implemented". Slipway's (and cosign v3's)
//     image signature is the attestation with predicate
//     https://sigstore.dev/cosign/sign/v1; the vuln attestation must also
//     pass the Trivy-shaped policy.
func keylessBundleCIP(stack *sigstack.Stack, trustRoot, subject string) string {
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: slipway-keyless
spec:
  images:
  - glob: "**"
  authorities:
  - name: slipway-keyless
    signatureFormat: bundle
    keyless:
      url: %s
      trustRootRef: %s
      insecureIgnoreSCT: true
      identities:
      - issuer: %s
        subject: %s
    rfc3161timestamp:
      trustRootRef: %s
    attestations:
    - name: signed
      predicateType: https://sigstore.dev/cosign/sign/v1
%s`, stack.FulcioURL, trustRoot, stack.IssuerURL, subject, trustRoot, vulnPolicyAttestation("rego", trivyVulnRego))
}

// TestPolicyControllerKeylessBundle: a keyless authority with
// signatureFormat: bundle, trusting the local stack through a TrustRoot,
// admits slipway's keyless image (bundles only, Fulcio certificate, TSA
// timestamp, no log) for the exact identity and denies it for another.
func TestPolicyControllerKeylessBundle(t *testing.T) {
	tester := testutil.Peer(t, "policy-tester")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	const email = "release@example.com"
	// keylessConfig's hello, and the vuln app with its HIGH finding let
	// through slipway's gate.
	cfg := keylessConfig(t, reg, stack, email)
	withVuln := strings.Replace(cfg, "scan:\n", fmt.Sprintf("  - name: vuln\n    dir: %s\n    main: .\nscan:\n  severity: [CRITICAL]\n",
		filepath.Join(repoRoot(), "testdata", "vulnapp")), 1)
	if withVuln == cfg {
		t.Fatal("keylessConfig has no scan section")
	}
	writeFile(t, dir, "slipway.yaml", withVuln)
	r := slipway(t, dir, envList(stack.GitHubActionsEnv(email)), "run", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("keyless run: %s", r)
	}
	res := readResults(t, filepath.Join(dir, "results.json"))
	hello, vuln := res["hello"], res["vuln"]
	if !hello.Pushed || !vuln.Pushed || len(hello.Signatures) == 0 || len(vuln.Signatures) == 0 || vuln.Findings["HIGH"] == 0 {
		t.Fatalf("keyless run: want both targets pushed and signed, vuln with a HIGH finding: %+v\n%s", res, r)
	}

	const trustRootName = "local-sigstore"
	trustRoot := trustRootResource(t, stack, trustRootName)
	cip := keylessBundleCIP(stack, trustRootName, email)
	testerAllows(t, tester, cip, trustRoot, hello.Ref)
	testerDenies(t, tester, cip, trustRoot, vuln.Ref, "HIGH or CRITICAL vulnerabilities: CVE-2022-32149")
	// The certificate chain, the timestamp and the digest all verify; only
	// the identity differs.
	wrongID := keylessBundleCIP(stack, trustRootName, "intruder@example.com")
	testerDenies(t, tester, wrongID, trustRoot, hello.Ref, `expected SAN value "intruder@example.com", got "`+email+`"`)
}

// runLettingHighThrough runs `slipway run --push` in dir on cfg (a
// pipelineConfig, with before inserted ahead of its scan section) with
// scan.severity [CRITICAL], so that the vuln target's HIGH finding gets
// through the gate and is pushed, signed and attested; it returns the
// results.
func runLettingHighThrough(t *testing.T, dir, cfg, before string) map[string]targetResult {
	t.Helper()
	gated := strings.Replace(cfg, "scan:\n", before+"scan:\n  severity: [CRITICAL]\n", 1)
	if gated == cfg {
		t.Fatal("pipelineConfig has no scan section")
	}
	writeFile(t, dir, "slipway.yaml", gated)
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "run", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	return readResults(t, filepath.Join(dir, "results.json"))
}
