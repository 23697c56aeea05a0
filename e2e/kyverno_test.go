package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/sign/export"
)

// Kyverno's CLI (v1.19.1, cmd/cli/kubectl-kyverno) applying the policy
// sign/export writes to Pods naming images slipway built, signed, attested
// and pushed, next to `slipway verify --policy` on the same images: both
// must give the expected verdict.
//
// The CLI runs verifyImages rules with a registry client of its own
// (processor/policy_processor.go: registryclient.New(), the default
// keychain and transport), so signatures are read from the loopback
// registry (go-containerregistry talks plain HTTP to 127.0.0.1); the
// imageRegistry context entries of the image config rule need --registry
// (store/contextloader.go drops the registry client without it). Key
// attestors with rekor.ignoreTlog and ctlog.ignoreSCT never reach for TUF
// (image/verifiers/cpol/cosign/sigstore.go getTrustedMaterial), so
// everything runs in the loopback-only namespace.

// slipwayHasNonRoot says whether slipway verify on this branch enforces
// require_non_root (sign.Policy.RequireNonRoot). Set it when that rule is
// merged: the non-root row then compares slipway's verdict too.
const slipwayHasNonRoot = true

// kyvernoCounts is the summary line `kyverno apply` prints.
var kyvernoCounts = regexp.MustCompile(`pass: (\d+), fail: (\d+), warn: (\d+), error: (\d+), skip: (\d+)`)

// kyvernoVerdict applies policy to a Pod running image and reports
// whether Kyverno admits it, failing the test on anything that is neither
// a clean pass nor a policy failure (an error, a skipped policy).
func kyvernoVerdict(t *testing.T, bin, policy, image string) (allowed bool, out string) {
	t.Helper()
	dir := t.TempDir()
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: default
spec:
  containers:
  - name: app
    image: %s
`, image)
	r := runPeer(t, dir, bin, nil, "apply", writeFile(t, dir, "policy.yaml", policy), "--resource", writeFile(t, dir, "pod.yaml", pod),
		"--registry", "--detailed-results", "--remove-color")
	m := kyvernoCounts.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("kyverno apply printed no result counts for %s: %s", image, r)
	}
	n := make([]int, 5)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	pass, fail, errs := n[0], n[1], n[3]
	if strings.Contains(r.stdout+r.stderr, "skipped") || strings.Contains(r.stderr, "policy validation error") {
		t.Fatalf("kyverno skipped the policy as invalid: %s\npolicy:\n%s", r, policy)
	}
	switch {
	case errs > 0:
		t.Fatalf("kyverno apply on %s: %d rule error(s), neither a pass nor a policy failure: %s", image, errs, r)
	case fail == 0 && pass > 0 && r.code == 0:
		return true, r.stdout
	case fail > 0 && r.code != 0:
		return false, r.stdout
	}
	t.Fatalf("kyverno apply on %s: unexpected outcome (pass %d, fail %d, exit %d): %s", image, pass, fail, r.code, r)
	return false, ""
}

// TestKyvernoEquivalence is the matrix for Kyverno: every image
// under every policy, the verdicts of slipway verify and of Kyverno's CLI
// on the exported policy, each equal to the expected one.
func TestKyvernoEquivalence(t *testing.T) {
	kyverno := testutil.Peer(t, "kyverno")
	testutil.RequireIsolated(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	db := fixtureDB(t)
	keyA, pubA := demoKey(t, t.TempDir(), "pw")
	keyB, pubB := demoKey(t, t.TempDir(), "pw")
	_, pubC := demoKey(t, t.TempDir(), "pw")

	// hello (clean) and vuln (CVE-2022-32149, HIGH, let through the gate
	// with scan.severity [CRITICAL]), signed with A in both formats and
	// attested (sbom, vuln, provenance).
	cfg := pipelineConfig(reg.Host+"/team", db, keyA, pubA, filepath.Join(repoRoot(), "testdata", "vulnapp"), "abort")
	res := runLettingHighThrough(t, dir, cfg, "")
	hello, vuln := res["hello"], res["vuln"]
	if !hello.Pushed || !vuln.Pushed || vuln.Findings["HIGH"] == 0 {
		t.Fatalf("want both targets pushed, vuln with a HIGH finding: %+v", res)
	}
	// hello gets a second signature, with B.
	writeFile(t, dir, "sign-b.yaml", "sign: {key: "+keyB+"}\n")
	if r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "sign", "-c", "sign-b.yaml", hello.Ref); r.code != 0 {
		t.Fatalf("signing hello with B: %s", r)
	}
	// An unsigned image, and one signed with A without attestations.
	app := filepath.Join(repoRoot(), "testdata", "apps", "hello")
	build := func(sub, target, signCfg string) string {
		t.Helper()
		d := filepath.Join(dir, sub)
		writeFile(t, d, "slipway.yaml", fmt.Sprintf("repository: %s/%s\nplatforms: [linux/amd64, linux/arm64]\ntargets:\n  - name: hello\n    dir: %s\n    main: ./cmd/hello\n%s%s", reg.Host, sub, app, target, signCfg))
		args := []string{"build", "--push"}
		if signCfg != "" {
			args = append(args, "--sign")
		}
		r := slipway(t, d, []string{"COSIGN_PASSWORD=pw"}, args...)
		if r.code != 0 {
			t.Fatalf("build %s: %s", sub, r)
		}
		return strings.TrimSpace(r.stdout)
	}
	unsigned := build("unsigned", "", "")
	sigOnly := build("sigonly", "", "sign:\n  key: "+keyA+"\n")
	// Signed with A, running as root (user 0:0 on both platforms).
	root := build("root", "    image: {user: \"0:0\"}\n", "sign:\n  key: "+keyA+"\n")

	pem := func(path string) export.Key {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return export.Key{PEM: string(b), Ref: path}
	}
	type policy struct {
		name   string
		file   string // slipway's policy block
		export export.Policy
		// noSlipway: this slipway binary predates the rule; only
		// Kyverno's verdict is compared.
		noSlipway bool
	}
	policies := []policy{
		{"key-a", fmt.Sprintf("keys: [%s]\nrequire_attestations: [vuln, provenance]\nmax_severity: HIGH\n", pubA),
			export.Policy{Keys: []export.Key{pem(pubA)}, RequireAttestations: []string{"vuln", "provenance"}, MaxSeverity: "HIGH"}, false},
		{"key-c", fmt.Sprintf("keys: [%s]\nrequire_attestations: [vuln, provenance]\nmax_severity: HIGH\n", pubC),
			export.Policy{Keys: []export.Key{pem(pubC)}, RequireAttestations: []string{"vuln", "provenance"}, MaxSeverity: "HIGH"}, false},
		{"threshold-2", fmt.Sprintf("keys: [%s, %s]\nthreshold: 2\n", pubA, pubB),
			export.Policy{Keys: []export.Key{pem(pubA), pem(pubB)}, Threshold: 2}, false},
		// Every scan here finished more than a second ago: stale.
		{"stale-scan", fmt.Sprintf("keys: [%s]\nmax_scan_age: 1s\n", pubA),
			export.Policy{Keys: []export.Key{pem(pubA)}, MaxScanAge: time.Second}, false},
		{"non-root", fmt.Sprintf("keys: [%s]\nrequire_non_root: true\n", pubA),
			export.Policy{Keys: []export.Key{pem(pubA)}, RequireNonRoot: true}, !slipwayHasNonRoot},
	}
	images := []struct{ name, ref string }{
		{"signed-clean (A+B)", hello.Ref},
		{"signed-HIGH (A)", vuln.Ref},
		{"unsigned", unsigned},
		{"signed-no-attestations (A)", sigOnly},
		{"signed-root (A)", root},
	}
	// By policy, in images order: "" admits; otherwise the deny reason
	// Kyverno must give (so that a denial for another reason, a rule
	// error say, does not count).
	const (
		noSig    = "sigstore bundle verification failed: no matching signatures found"
		oneOfTwo = "verifiedCount: 1, requiredCount: 2"
		high     = "the vuln attestation lists a finding at or above HIGH (max_severity)"
		stale    = "the vulnerability scan finished longer than 1s ago (max_scan_age)"
		rootUser = "the image runs as root: its config user is empty, root or 0 (require_non_root)"
	)
	want := map[string][]string{
		"key-a":       {"", high, noSig, noSig, noSig},
		"key-c":       {noSig, noSig, noSig, noSig, noSig},
		"threshold-2": {"", oneOfTwo, "verifiedCount: 0, requiredCount: 2", oneOfTwo, oneOfTwo},
		"stale-scan":  {stale, stale, noSig, noSig, noSig},
		"non-root":    {"", "", noSig, "", rootUser},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %-12s %-8s %-8s %-8s\n", "image", "policy", "want", "slipway", "kyverno")
	verdict := map[bool]string{true: "allow", false: "deny"}
	for _, p := range policies {
		file := writeFile(t, dir, p.name+".policy.yaml", p.file)
		exp, err := export.Kyverno(p.export, export.Options{Name: "slipway-" + p.name, Images: []string{reg.Host + "/*"}})
		if err != nil {
			t.Fatalf("%s: export: %v", p.name, err)
		}
		if len(exp.Dropped) != 0 {
			t.Fatalf("%s: export dropped %v", p.name, exp.Dropped)
		}
		for i, img := range images {
			reason := want[p.name][i]
			w := reason == ""
			sv, sout, scol := w, "", "n/a"
			if !p.noSlipway {
				v, why := slipwayVerdict(t, file, img.ref) // policyexport_test.go
				sv, sout = v == allow, why
				scol = verdict[sv]
			}
			kv, kout := kyvernoVerdict(t, kyverno, string(exp.YAML), img.ref)
			fmt.Fprintf(&table, "%-28s %-12s %-8s %-8s %-8s\n", img.name, p.name, verdict[w], scol, verdict[kv])
			if sv != w {
				t.Errorf("slipway verify, policy %s, %s: %s, want %s\n%s", p.name, img.name, verdict[sv], verdict[w], sout)
			}
			if kv != w {
				t.Errorf("kyverno, policy %s, %s: %s, want %s\n%s\npolicy:\n%s", p.name, img.name, verdict[kv], verdict[w], kout, exp.YAML)
			} else if !kv && !strings.Contains(kout, reason) {
				t.Errorf("kyverno, policy %s, %s: denied, but not for %q:\n%s", p.name, img.name, reason, kout)
			}
		}
	}
	t.Logf("verdicts:\n%s", table.String())
}
