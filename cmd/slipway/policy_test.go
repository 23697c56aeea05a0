package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12: slipway policy export reads the policy with verify's parser,
// fails (exit 2) on a rule the target cannot express naming the rule and
// the target, and with --allow-weaker writes the policy without it and
// says what was dropped.
func TestPolicyExport(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "trusted.pub"), readFile(t, testKeyFile(t, "cosign.pub")), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok.yaml", "keys: [trusted.pub]\nrequire_attestations: [vuln]\nmax_severity: HIGH\n")
	out, errOut, code := runIn(t, t.TempDir(), nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", ok, "--images", "reg.example/team/**")
	if code != 0 || !strings.Contains(out, "kind: ClusterImagePolicy") || !strings.Contains(out, "glob: reg.example/team/**") ||
		!strings.Contains(out, "BEGIN PUBLIC KEY") || !strings.Contains(out, "Vulnerabilities") {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
	}
	// The vuln rule brings the 168h rollback window, as in verify.
	if !strings.Contains(out, "604800000000000") {
		t.Errorf("export lacks the default max_scan_age (168h):\n%s", out)
	}

	weak := write("weak.yaml", "keys: [trusted.pub]\ntrusted_root: root.json\nrequire_timestamp: true\n")
	write("root.json", `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	_, errOut, code = runIn(t, t.TempDir(), nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", weak, "--images", "r/**")
	if code != 2 || !strings.Contains(errOut, "policy.require_timestamp") || !strings.Contains(errOut, "clusterimagepolicy") {
		t.Fatalf("unsupported rule: exit %d, stderr %s", code, errOut)
	}
	out, errOut, code = runIn(t, t.TempDir(), nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", weak, "--images", "r/**", "--allow-weaker")
	if code != 0 || !strings.Contains(errOut, "require_timestamp") || !strings.Contains(errOut, "left out") || !strings.Contains(out, "ClusterImagePolicy") {
		t.Fatalf("--allow-weaker: exit %d\n%s\n%s", code, out, errOut)
	}

	bad := write("bad.yaml", "keys: [trusted.pub]\nidentities:\n  - issuer: https://i\n    subject_regexp: 'x'\n")
	_, errOut, code = runIn(t, t.TempDir(), nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", bad, "--images", "r/**")
	if code != 2 || !strings.Contains(errOut, "bad.yaml:4") || !strings.Contains(errOut, "policy.identities[0].subject_regexp") {
		t.Fatalf("invalid policy: exit %d, stderr %s", code, errOut)
	}
	if _, errOut, code = runIn(t, t.TempDir(), nil, "policy", "export", "--format", "opa", "--policy", ok); code != 2 || !strings.Contains(errOut, "--format") {
		t.Fatalf("unknown format: exit %d, stderr %s", code, errOut)
	}
	if _, errOut, code = runIn(t, t.TempDir(), nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", ok); code != 2 || !strings.Contains(errOut, "--images") {
		t.Fatalf("no repository and no --images: exit %d, stderr %s", code, errOut)
	}
	// A target pushed outside <repository>/** is not covered by the
	// default glob: --images is required.
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "slipway.yaml"), []byte("repository: reg.example/team\ntargets:\n  - name: a\n  - name: b\n    repository: reg.example/other/b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = runIn(t, elsewhere, nil, "policy", "export", "--format", "clusterimagepolicy", "--policy", ok); code != 2 || !strings.Contains(errOut, "reg.example/other/b") || !strings.Contains(errOut, "--images") {
		t.Fatalf("target outside the repository: exit %d, stderr %s", code, errOut)
	}

	// slipway.yaml signs bundles only: policy-controller's key authorities
	// could not read them.
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, "trusted.pub"), readFile(t, testKeyFile(t, "cosign.pub")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "slipway.yaml"), []byte("repository: reg.example/team\nsign:\n  key: trusted.pub\n  format: bundle\npolicy:\n  keys: [trusted.pub]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = runIn(t, cfgDir, nil, "policy", "export", "--format", "clusterimagepolicy"); code != 2 || !strings.Contains(errOut, "slipway.yaml:4: sign.format") {
		t.Fatalf("bundle-only signing exported to policy-controller: exit %d, stderr %s", code, errOut)
	}
	if out, errOut, code = runIn(t, cfgDir, nil, "policy", "export", "--format", "kyverno"); code != 0 || !strings.Contains(out, "reg.example/team/**") {
		t.Fatalf("bundle signing exported to Kyverno: exit %d\n%s\n%s", code, out, errOut)
	}
}
