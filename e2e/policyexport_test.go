package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign/rego"
	"go.yaml.in/yaml/v3"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/sigstack"
)

// Issue 12's equivalence test, policy-controller column: for a matrix of
// images slipway built, pushed and signed, the verdict of `slipway verify
// --policy FILE` and the verdict of policy-controller's tester (v0.13.1)
// on the ClusterImagePolicy exported from the same FILE are equal, and
// equal to the expected one.

// verdict is an admission outcome.
type verdict string

const (
	allow verdict = "allow"
	deny  verdict = "deny"
)

// exportPolicyFile reads a policy file as `slipway verify --policy` does
// (pipeline.DecodePolicyFile, key paths relative to the file, max_scan_age
// as verify applies it) and exports it for images in-process.
func exportPolicyFile(t *testing.T, file string, images []string) (cip, trustRoot string) {
	t.Helper()
	args := []string{"policy", "export", "--format", "clusterimagepolicy", "--policy", file}
	for _, g := range images {
		args = append(args, "--images", g)
	}
	r := slipway(t, filepath.Dir(file), nil, args...)
	if r.code != 0 {
		t.Fatalf("slipway policy export: %s", r)
	}
	if strings.Contains(r.stderr, "left out") {
		t.Fatalf("export dropped rules without --allow-weaker: %s", r.stderr)
	}
	// The TrustRoot, when there is one, comes first; the tester takes each
	// in its own file.
	docs := strings.Split(r.stdout, "\n---\n")
	switch len(docs) {
	case 1:
		return docs[0], ""
	case 2:
		return docs[1], docs[0] + "\n"
	}
	t.Fatalf("export wrote %d documents", len(docs))
	return "", ""
}

// slipwayVerdict runs slipway verify --policy file on image: exit 0 is
// allow, 3 deny; anything else fails the test.
func slipwayVerdict(t *testing.T, file, image string) (verdict, string) {
	t.Helper()
	r := slipway(t, filepath.Dir(file), nil, "verify", image, "--policy", file, "--output", "json")
	switch r.code {
	case 0:
		return allow, ""
	case 3:
		var v struct{ Reasons []string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Reasons) == 0 {
			t.Fatalf("slipway verify denied without reasons: %s", r)
		}
		return deny, strings.Join(v.Reasons, "; ")
	}
	t.Fatalf("slipway verify %s failed: %s", image, r)
	return "", ""
}

// testerVerdictOf runs the tester: exit 0 is allow; exit 1 with the
// errors report is deny; anything else (no report: an invalid policy, a
// crash) fails the test. The tester reports only the first error (an
// authority's, in no fixed order), and logs spec.policy's error as
// "%!w(…)"; the reason returned starts with spec.policy's message,
// re-evaluated on the input the webhook logged.
func testerVerdictOf(t *testing.T, bin, cip, trustRoot, image string) (verdict, string) {
	t.Helper()
	r := policyTester(t, bin, t.TempDir(), cip, trustRoot, image)
	if r.code == 0 {
		return allow, ""
	}
	var v testerVerdict
	if r.code != 1 || json.Unmarshal([]byte(lastLine(r.stdout)), &v) != nil || len(v.Errors) == 0 {
		t.Fatalf("policy-tester failed without a verdict on %s: %s\npolicy:\n%s", image, r, cip)
	}
	why := strings.Join(v.Errors, "; ")
	if in := specPolicyInput(r.stderr); in != nil {
		// spec.policy was evaluated: its verdict on the input the webhook
		// logged, with cosign's Rego evaluator (what the webhook calls).
		var doc struct {
			Spec struct {
				Policy struct{ Data string } `yaml:"policy"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal([]byte(cip), &doc); err != nil {
			t.Fatal(err)
		}
		_, err := rego.ValidateJSONWithModuleInput(in, doc.Spec.Policy.Data)
		if err == nil {
			t.Fatalf("policy-tester denied %s, yet spec.policy admits its input:\n%s", image, in)
		}
		why = "spec.policy: " + err.Error() + " | " + why
	}
	return deny, why
}

// specPolicyInput is the input spec.policy was evaluated on, as the
// webhook logs it ("CIP level policy: {…}"), or nil when it was not (no
// authority passed).
func specPolicyInput(stderr string) []byte {
	for _, l := range strings.Split(stderr, "\n") {
		msg := l
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil {
			if m, ok := rec["msg"].(string); ok {
				msg = m
			}
		}
		if _, in, ok := strings.Cut(msg, "CIP level policy: "); ok && json.Valid([]byte(strings.TrimSpace(in))) {
			return []byte(strings.TrimSpace(in))
		}
	}
	return nil
}

// copyImage copies the index src to dst (a new repository: no signature
// or attestation travels with it) and returns dst by digest.
func copyImage(t *testing.T, src, dst string) string {
	t.Helper()
	s, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(d, idx); err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.Context().Digest(h.String()).String()
}

// denied starts the reason of a spec.policy denial (cosign's Rego
// evaluator names the query, then the policy's error).
const denied = "spec.policy: policy is not compliant for query 'isCompliant = data.sigstore.isCompliant' with errors: "

// row is one line of the matrix.
type row struct {
	name, image, policy string
	want                verdict
	// slipWhy and pcWhy are in slipway's reasons and the tester's
	// (spec.policy's message, or an authority's when none passed).
	slipWhy, pcWhy string
}

// TestPolicyExportEquivalence: slipway verify and policy-controller's
// tester, on the exported ClusterImagePolicy, agree on every image of the
// matrix.
func TestPolicyExportEquivalence(t *testing.T) {
	tester := testutil.Peer(t, "policy-tester")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	priv, pub := demoKey(t, dir, "pw")
	priv2, pub2 := demoKey(t, t.TempDir(), "pw")

	// Key-signed images: hello (clean), vuln (a HIGH finding let through
	// slipway's gate) and root (hello running as uid 0).
	cfg := pipelineConfig(reg.Host+"/team", db, priv, pub, filepath.Join(repoRoot(), "testdata", "vulnapp"), "abort")
	res := runLettingHighThrough(t, dir, cfg, fmt.Sprintf(`  - name: root
    dir: %s
    main: ./cmd/hello
    image: {user: "0"}
`, filepath.Join(repoRoot(), "testdata", "apps", "hello")))
	hello, vuln, rootImg := res["hello"], res["vuln"], res["root"]
	if !hello.Pushed || !vuln.Pushed || !rootImg.Pushed || len(hello.Signatures) == 0 || vuln.Findings["HIGH"] == 0 {
		t.Fatalf("want hello, vuln and root pushed and signed, vuln with a HIGH finding: %+v", res)
	}
	// Unsigned: hello's index in a repository where nothing signed it.
	// Signed only: the same, signed with `slipway sign` (no attestations).
	// Twice: signed with `slipway sign` by both keys.
	unsigned := copyImage(t, hello.Ref, reg.Host+"/team/unsigned:1")
	signedOnly := copyImage(t, hello.Ref, reg.Host+"/team/signed-only:1")
	twice := copyImage(t, hello.Ref, reg.Host+"/team/twice:1")
	signDir := t.TempDir()
	for _, s := range []struct{ image, key string }{{signedOnly, priv}, {twice, priv}, {twice, priv2}} {
		if r := slipway(t, signDir, []string{"COSIGN_PASSWORD=pw"}, "sign", s.image, "--key", s.key); r.code != 0 {
			t.Fatalf("sign %s: %s", s.image, r)
		}
	}

	// Keyless: hello signed by release@example.com through the stack.
	kdir := t.TempDir()
	const email = "release@example.com"
	writeFile(t, kdir, "slipway.yaml", keylessConfig(t, reg, stack, email))
	if r := slipway(t, kdir, envList(stack.GitHubActionsEnv(email)), "run", "--push", "--output-json", "results.json"); r.code != 0 {
		t.Fatalf("keyless run: %s", r)
	}
	khello := readResults(t, filepath.Join(kdir, "results.json"))["hello"]
	if !khello.Pushed || len(khello.Signatures) == 0 {
		t.Fatalf("keyless run: %+v", khello)
	}

	// The policies, as files slipway verify reads.
	pdir := t.TempDir()
	const rules = "require_attestations: [sbom, vuln, provenance]\nmax_severity: HIGH\n"
	policies := map[string]string{
		"main":      fmt.Sprintf("keys: [%s]\n%s", pub, rules),
		"other-key": fmt.Sprintf("keys: [%s]\n%s", pub2, rules),
		"stale":     fmt.Sprintf("keys: [%s]\n%smax_scan_age: 1s\n", pub, rules),
		"non-root":  fmt.Sprintf("keys: [%s]\n%srequire_non_root: true\n", pub, rules),
		"threshold": fmt.Sprintf("keys: [%s, %s]\nthreshold: 2\n", pub, pub2),
		"keyless-right": fmt.Sprintf("identities: [{issuer: %q, subject: %q}]\ntrusted_root: %s\nrequire_timestamp: true\n%s",
			stack.IssuerURL, email, stack.TrustedRootPath, rules),
		"keyless-wrong": fmt.Sprintf("identities: [{issuer: %q, subject: %q}]\ntrusted_root: %s\nrequire_timestamp: true\n%s",
			stack.IssuerURL, "intruder@example.com", stack.TrustedRootPath, rules),
	}
	files := map[string]string{}
	for n, body := range policies {
		files[n] = writeFile(t, pdir, n+".yaml", body)
	}
	// The stale row needs a scan older than a second.
	time.Sleep(1500 * time.Millisecond)

	rows := []row{
		{name: "signed + clean", image: hello.Ref, policy: "main", want: allow},
		// The tester reports the first failing authority, in map order:
		// the signature's or an attestation's.
		{name: "unsigned", image: unsigned, policy: "main", want: deny, slipWhy: "no signatures found", pcWhy: "no signatures found||no matching"},
		{name: "signed by another key", image: hello.Ref, policy: "other-key", want: deny,
			slipWhy: "from a trusted key", pcWhy: "key validation failed"},
		{name: "HIGH finding (max_severity HIGH)", image: vuln.Ref, policy: "main", want: deny,
			slipWhy: "HIGH CVE-2022-32149", pcWhy: denied + "1 of 1 vuln attestations within max_scan_age 168h0m0s signed by key-0 fail max_severity"},
		{name: "stale scan (max_scan_age 1s)", image: hello.Ref, policy: "stale", want: deny,
			slipWhy: "older than the maximum 1s", pcWhy: denied + "no vuln attestation within max_scan_age 1s"},
		{name: "missing required attestations", image: signedOnly, policy: "main", want: deny,
			slipWhy: "required sbom attestation missing", pcWhy: denied + "no vuln attestation within max_scan_age 168h0m0s signed by a trusted key or identity (required by max_severity / max_scan_age); required provenance attestation missing"},
		{name: "running as root (require_non_root)", image: rootImg.Ref, policy: "non-root", want: deny,
			slipWhy: `runs as root (config user "0"`, pcWhy: denied + `linux/amd64 runs as root (config user "0"`},
		{name: "non-root (require_non_root)", image: hello.Ref, policy: "non-root", want: allow},
		{name: "keyless, right identity", image: khello.Ref, policy: "keyless-right", want: allow},
		{name: "keyless, wrong identity", image: khello.Ref, policy: "keyless-wrong", want: deny,
			slipWhy: `expected SAN value "intruder@example.com"`, pcWhy: `expected SAN value "intruder@example.com"`},
		{name: "threshold 2, one signature", image: hello.Ref, policy: "threshold", want: deny,
			slipWhy: "valid signatures from 1 of 2 trusted keys and identities, threshold is 2",
			pcWhy:   denied + "valid signatures from 1 of 2 trusted keys and identities, threshold is 2"},
		{name: "threshold 2, two signatures", image: twice, policy: "threshold", want: allow},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-52s %-8s %-8s %s\n", "image (policy)", "expected", "slipway", "policy-controller")
	var failed []string
	for _, rw := range rows {
		cip, trustRoot := exportPolicyFile(t, files[rw.policy], []string{reg.Host + "/**"})
		sv, sWhy := slipwayVerdict(t, files[rw.policy], rw.image)
		pv, pWhy := testerVerdictOf(t, tester, cip, trustRoot, rw.image)
		fmt.Fprintf(&table, "%-52s %-8s %-8s %s\n", rw.name+" ("+rw.policy+")", rw.want, sv, pv)
		t.Logf("%s: slipway %s %s | policy-controller %s %s", rw.name, sv, sWhy, pv, pWhy)
		if pv != rw.want || sv != rw.want || !containsOneOf(pWhy, rw.pcWhy) || !strings.Contains(sWhy, rw.slipWhy) {
			failed = append(failed, fmt.Sprintf("%s: want %s (%q / %q), slipway %s (%s), policy-controller %s (%s)", rw.name, rw.want, rw.slipWhy, rw.pcWhy, sv, sWhy, pv, pWhy))
		}
	}
	t.Log(table.String())
	if len(failed) > 0 {
		t.Fatalf("verdicts differ:\n%s", strings.Join(failed, "\n"))
	}
}

// containsOneOf reports whether s contains one of the "||"-separated
// alternatives of want.
func containsOneOf(s, want string) bool {
	for _, w := range strings.Split(want, "||") {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
