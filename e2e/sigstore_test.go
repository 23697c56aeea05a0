package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/sigstack"
)

// The Sigstore ecosystem's own tools, run against what slipway writes and
// what they write run against slipway. Every peer runs in this package's
// loopback-only network namespace (TestMain): cosign v3 reaches for TUF at
// start and finds no route.

// runPeer runs a peer tool in dir with a clean environment: PATH, a
// private HOME, TUF_ROOT and Docker config, and env.
func runPeer(t testing.TB, dir, bin string, env []string, args ...string) result {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"),
		"DOCKER_CONFIG=" + filepath.Join(home, "docker"), "TMPDIR=" + home}, env...)
	return runCmd(t, cmd)
}

// mustPeer is runPeer that fails the test unless the tool exits 0.
func mustPeer(t testing.TB, dir, bin string, env []string, args ...string) result {
	t.Helper()
	r := runPeer(t, dir, bin, env, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: %s", filepath.Base(filepath.Dir(bin)), strings.Join(args, " "), r)
	}
	return r
}

// denyPeer fails the test unless the tool exits non-zero.
func denyPeer(t testing.TB, dir, bin string, env []string, args ...string) {
	t.Helper()
	if r := runPeer(t, dir, bin, env, args...); r.code == 0 {
		t.Fatalf("%s %s accepted, want a refusal: %s", filepath.Base(filepath.Dir(bin)), strings.Join(args, " "), r)
	}
}

// signedRun builds, scans, signs (with a key, format both, sbom, vuln and
// provenance attestations) and pushes the hello app to reg; it returns
// the pushed repo@digest, the key pair and the working directory.
func signedRun(t *testing.T, reg *testutil.Registry, extraSign string) (ref, priv, pub, dir string) {
	t.Helper()
	dir = t.TempDir()
	db := fixtureDB(t)
	priv, pub = demoKey(t, dir, "pw")
	cfg := helloOnly(pipelineConfig(reg.Host+"/team", db, priv, pub, "", "abort"))
	cfg = strings.Replace(cfg, "  attestations: [sbom, vuln, provenance]\n", "  attestations: [sbom, vuln, provenance]\n"+extraSign, 1)
	writeFile(t, dir, "slipway.yaml", cfg)
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "run", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	return readResults(t, filepath.Join(dir, "results.json"))["hello"].Ref, priv, pub, dir
}

// TestCosignAcceptsSlipwayKeySignatures: cosign v3 (bundles) and v2 (legacy
// tags) accept slipway's key signatures and attestations; after a third
// party attaches its own cosign v3 bundle, cosign v3 still verifies
// slipway's, and slipway verifies the third party's.
func TestCosignAcceptsSlipwayKeySignatures(t *testing.T) {
	cosign3, cosign2 := testutil.Peer(t, "cosign-v3"), testutil.Peer(t, "cosign-v2")
	reg := testutil.StartRegistry(t)
	ref, _, pub, dir := signedRun(t, reg, "")

	// cosign v2.6.5 switches to the bundle format when it finds bundle
	// referrers, and then wants a trusted root: online it fetches the
	// public-good one over TUF; here (no route out) it is given one with
	// no authorities, which is all a key needs.
	emptyRoot := writeFile(t, dir, "empty_root.json", `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	for _, c := range []struct {
		bin  string
		args []string
	}{{cosign3, nil}, {cosign2, []string{"--trusted-root", emptyRoot}}} {
		mustPeer(t, dir, c.bin, nil, append([]string{"verify", "--key", pub, "--insecure-ignore-tlog", ref}, c.args...)...)
		for _, typ := range []string{"vuln", "spdxjson", "slsaprovenance1"} {
			mustPeer(t, dir, c.bin, nil, append([]string{"verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", typ, ref}, c.args...)...)
		}
	}
	otherDir := t.TempDir()
	other, otherPub := demoKey(t, otherDir, "pw")
	denyPeer(t, dir, cosign3, nil, "verify", "--key", otherPub, "--insecure-ignore-tlog", ref)

	// A third party signs the same digest with cosign v3's defaults (a
	// bundle referrer), offline: a signing config with no services.
	sc := filepath.Join(otherDir, "signing-config.json")
	mustPeer(t, otherDir, cosign3, nil, "signing-config", "create", "--out", sc)
	mustPeer(t, otherDir, cosign3, []string{"COSIGN_PASSWORD=pw"}, "sign", "--yes", "--key", other, "--signing-config", sc, ref)
	mustPeer(t, dir, cosign3, nil, "verify", "--key", otherPub, "--insecure-ignore-tlog", ref)
	// cosign v3 now reads bundles only: slipway's bundles are still there.
	mustPeer(t, dir, cosign3, nil, "verify", "--key", pub, "--insecure-ignore-tlog", ref)
	mustPeer(t, dir, cosign3, nil, "verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", "vuln", ref)

	// slipway verifies cosign v3's default format, and both keys together
	// (in a directory without slipway.yaml: only the keys count).
	vdir := t.TempDir()
	if r := slipway(t, vdir, nil, "verify", "--key", otherPub, ref); r.code != 0 {
		t.Fatalf("slipway verify of cosign v3's bundle: %s", r)
	}
	policy := writeFile(t, dir, "two.yaml", "keys: ["+pub+", "+otherPub+"]\nthreshold: 2\n")
	if r := slipway(t, vdir, nil, "verify", "--policy", policy, ref); r.code != 0 {
		t.Fatalf("slipway verify threshold 2 (slipway + cosign v3): %s", r)
	}
	_, thirdPub := demoKey(t, t.TempDir(), "pw")
	if r := slipway(t, vdir, nil, "verify", "--key", thirdPub, ref); r.code != 3 {
		t.Fatalf("slipway verify with an unrelated key: %s, want exit 3", r)
	}
}

// TestSlipwayAcceptsCosignLegacy: an image cosign v2 signed (legacy tag)
// verifies in slipway, and as a base_policy base.
func TestSlipwayAcceptsCosignLegacy(t *testing.T) {
	cosign2 := testutil.Peer(t, "cosign-v2")
	reg := testutil.StartRegistry(t)
	ref, _, _, _ := signedRun(t, reg, "  format: bundle\n") // slipway's own signatures: bundles only
	otherDir := t.TempDir()
	other, otherPub := demoKey(t, otherDir, "pw")
	vdir := t.TempDir() // no slipway.yaml: only the key counts
	if r := slipway(t, vdir, nil, "verify", "--key", otherPub, ref); r.code != 3 {
		t.Fatalf("before cosign v2 signed: %s, want exit 3", r)
	}
	mustPeer(t, otherDir, cosign2, []string{"COSIGN_PASSWORD=pw"}, "sign", "--yes", "--key", other, "--tlog-upload=false", ref)
	if r := slipway(t, vdir, nil, "verify", "--key", otherPub, ref); r.code != 0 {
		t.Fatalf("slipway verify of cosign v2's legacy signature: %s", r)
	}
}

// TestTrivyFindsSlipwaySBOM: Trivy's --sbom-sources oci finds the SBOM
// attestation among slipway's referrers.
func TestTrivyFindsSlipwaySBOM(t *testing.T) {
	trivy := testutil.Peer(t, "trivy")
	reg := testutil.StartRegistry(t)
	ref, _, _, dir := signedRun(t, reg, "")
	cache := fixtureDB(t) // Trivy's cache layout: <cache>/db/trivy.db
	r := mustPeer(t, dir, trivy, nil, "image", "--sbom-sources", "oci", "--cache-dir", cache, "--skip-db-update",
		"--skip-java-db-update", "--offline-scan", "--scanners", "vuln", "--format", "json", ref)
	if !strings.Contains(r.stderr, "Found SBOM") {
		t.Fatalf("trivy did not find the SBOM: %s", r)
	}
}

// keylessConfig is a hello-only config signing keylessly against the local
// stack (Fulcio, the timestamp authority, no log) and a policy trusting
// email from the stack's issuer.
func keylessConfig(t *testing.T, reg *testutil.Registry, stack *sigstack.Stack, email string) string {
	t.Helper()
	db := fixtureDB(t)
	return fmt.Sprintf(`repository: %s/keyless
platforms: [linux/amd64, linux/arm64]
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db: {dir: %s}
  cache_dir: %s
sign:
  keyless: true
  fulcio_url: %s
  tsa_url: %s
  rekor_url: none
  trusted_root: %s
  attestations: [sbom, vuln, provenance]
policy:
  identities: [{issuer: %q, subject: %q}]
  trusted_root: %s
  require_timestamp: true
  require_attestations: [sbom, vuln, provenance]
  max_severity: HIGH
`, reg.Host, filepath.Join(repoRoot(), "testdata", "apps", "hello"), db, filepath.Join(filepath.Dir(db), "scan-cache"),
		stack.FulcioURL, stack.TSAURL, stack.TrustedRootPath, stack.IssuerURL, email, stack.TrustedRootPath)
}

func envList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestKeylessInterop: slipway signs keylessly in "GitHub Actions" (the
// stack's token endpoint); cosign v3 accepts the signatures and
// attestations with the local trusted root and the exact identity and
// refuses another identity; slipway verify does the same and refuses an
// unanchored regexp as a config error; nothing prints a token.
func TestKeylessInterop(t *testing.T) {
	cosign3 := testutil.Peer(t, "cosign-v3")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	const email = "release@example.com"
	writeFile(t, dir, "slipway.yaml", keylessConfig(t, reg, stack, email))
	gh := stack.GitHubActionsEnv(email)
	r := slipway(t, dir, envList(gh), "run", "--push", "--output-json", "results.json", "-v")
	if r.code != 0 {
		t.Fatalf("keyless run: %s", r)
	}
	res, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	for _, out := range []string{r.stdout, r.stderr, string(res)} {
		if strings.Contains(out, gh["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]) || strings.Contains(out, "eyJ") {
			t.Fatalf("a token appears in slipway's output:\n%s", out)
		}
	}
	ref := readResults(t, filepath.Join(dir, "results.json"))["hello"].Ref

	id := []string{"--trusted-root", stack.TrustedRootPath, "--certificate-oidc-issuer", stack.IssuerURL,
		"--insecure-ignore-tlog", "--insecure-ignore-sct", "--use-signed-timestamps"}
	mustPeer(t, dir, cosign3, nil, append([]string{"verify", "--certificate-identity", email}, append(id, ref)...)...)
	for _, typ := range []string{"vuln", "spdxjson", "slsaprovenance1"} {
		mustPeer(t, dir, cosign3, nil, append([]string{"verify-attestation", "--type", typ, "--certificate-identity", email}, append(id, ref)...)...)
	}
	denyPeer(t, dir, cosign3, nil, append([]string{"verify", "--certificate-identity", "intruder@example.com"}, append(id, ref)...)...)

	if v := slipway(t, dir, nil, "verify", ref); v.code != 0 {
		t.Fatalf("slipway verify (policy identity): %s", v)
	}
	flags := []string{"--trusted-root", stack.TrustedRootPath, "--certificate-oidc-issuer", stack.IssuerURL}
	if v := slipway(t, dir, nil, append([]string{"verify", ref, "--certificate-identity", "intruder@example.com"}, flags...)...); v.code != 3 {
		t.Fatalf("slipway verify, wrong identity: %s, want exit 3", v)
	}
	if v := slipway(t, dir, nil, append([]string{"verify", ref, "--certificate-identity-regexp", `^.*@example\.com$`}, flags...)...); v.code != 0 {
		t.Fatalf("slipway verify, anchored regexp: %s", v)
	}
	if v := slipway(t, dir, nil, append([]string{"verify", ref, "--certificate-identity-regexp", `release`}, flags...)...); v.code != 2 {
		t.Fatalf("slipway verify, unanchored regexp: %s, want exit 2", v)
	}
	// A policy file with an unanchored regexp: exit 2 naming file and key.
	bad := writeFile(t, dir, "bad.yaml", fmt.Sprintf("identities:\n  - issuer: %s\n    subject_regexp: '@example\\.com$'\ntrusted_root: %s\n", stack.IssuerURL, stack.TrustedRootPath))
	if v := slipway(t, dir, nil, "verify", "--policy", bad, ref); v.code != 2 || !strings.Contains(v.stderr, "bad.yaml:3") || !strings.Contains(v.stderr, "subject_regexp") {
		t.Fatalf("slipway verify, unanchored regexp in a policy file: %s", v)
	}
}

// TestSlipwayAcceptsCosignV3: images cosign v3 signed with its defaults
// (bundle referrers), with a key and keylessly, verify in slipway; wrong
// keys and identities do not; a cosign-v3-signed base passes base_policy.
func TestSlipwayAcceptsCosignV3(t *testing.T) {
	cosign3 := testutil.Peer(t, "cosign-v3")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	// The image to sign: slipway's own build, unsigned.
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf("repository: %s/base\nplatforms: [linux/amd64]\ntargets:\n  - name: hello\n    dir: %s\n    main: ./cmd/hello\nscan: {enabled: false}\n",
		reg.Host, filepath.Join(repoRoot(), "testdata", "apps", "hello")))
	r := slipway(t, dir, nil, "build", "--push", "--output-json", "results.json")
	if r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	ref := readResults(t, filepath.Join(dir, "results.json"))["hello"].Ref

	key, pub := demoKey(t, t.TempDir(), "pw")
	mustPeer(t, dir, cosign3, []string{"COSIGN_PASSWORD=pw"}, "sign", "--yes", "--key", key, "--signing-config", stack.SigningConfigPath,
		"--trusted-root", stack.TrustedRootPath, ref)
	const email = "cosign@example.com"
	mustPeer(t, dir, cosign3, nil, "sign", "--yes", "--identity-token", stack.Token(t, email), "--signing-config", stack.SigningConfigPath,
		"--trusted-root", stack.TrustedRootPath, ref)

	if v := slipway(t, dir, nil, "verify", "--key", pub, ref); v.code != 0 {
		t.Fatalf("slipway verify of cosign v3's key bundle: %s", v)
	}
	_, otherPub := demoKey(t, t.TempDir(), "pw")
	if v := slipway(t, dir, nil, "verify", "--key", otherPub, ref); v.code != 3 {
		t.Fatalf("slipway verify with another key: %s, want exit 3", v)
	}
	flags := []string{"--trusted-root", stack.TrustedRootPath, "--certificate-oidc-issuer", stack.IssuerURL}
	if v := slipway(t, dir, nil, append([]string{"verify", ref, "--certificate-identity", email}, flags...)...); v.code != 0 {
		t.Fatalf("slipway verify of cosign v3's keyless bundle: %s", v)
	}
	if v := slipway(t, dir, nil, append([]string{"verify", ref, "--certificate-identity", "other@example.com"}, flags...)...); v.code != 3 {
		t.Fatalf("slipway verify, wrong identity: %s, want exit 3", v)
	}

	// The cosign-signed image as a base: base_policy accepts the keyless
	// identity, and refuses when only an unrelated key is trusted.
	app := copyApp(t, "hello")
	base := ref
	cfg := fmt.Sprintf("repository: %s/app\nplatforms: [linux/amd64]\nbase: %s\ntargets:\n  - name: app\n    main: ./cmd/hello\nscan: {enabled: false}\nbase_policy:\n  identities: [{issuer: %q, subject: %q}]\n  trusted_root: %s\n",
		reg.Host, base, stack.IssuerURL, email, stack.TrustedRootPath)
	writeFile(t, app, "slipway.yaml", cfg)
	if b := slipway(t, app, nil, "build", "--push"); b.code != 0 {
		t.Fatalf("build on a cosign-v3-signed base: %s", b)
	}
	writeFile(t, app, "slipway.yaml", fmt.Sprintf("repository: %s/app\nplatforms: [linux/amd64]\nbase: %s\ntargets:\n  - name: app\n    main: ./cmd/hello\nscan: {enabled: false}\nbase_policy:\n  keys: [%s]\n",
		reg.Host, base, otherPub))
	if b := slipway(t, app, nil, "build", "--push"); b.code != 3 {
		t.Fatalf("build on a base signed by no trusted key: %s, want exit 3", b)
	}
}

// TestKeySignaturesTimestamped: with sign.tsa_url a key's bundles carry an
// RFC 3161 timestamp; require_timestamp accepts them and refuses an image
// signed without one; cosign v3 checks the timestamp against the trusted
// root.
func TestKeySignaturesTimestamped(t *testing.T) {
	cosign3 := testutil.Peer(t, "cosign-v3")
	stack := sigstack.Start(t)
	reg := testutil.StartRegistry(t)
	ref, _, pub, _ := signedRun(t, reg, "  format: bundle\n  tsa_url: "+stack.TSAURL+"\n")
	vdir := t.TempDir()
	policy := writeFile(t, vdir, "ts.yaml", fmt.Sprintf("keys: [%s]\ntrusted_root: %s\nrequire_timestamp: true\n", pub, stack.TrustedRootPath))
	if v := slipway(t, vdir, nil, "verify", "--policy", policy, ref); v.code != 0 {
		t.Fatalf("verify require_timestamp of a timestamped key bundle: %s", v)
	}
	mustPeer(t, vdir, cosign3, nil, "verify", "--key", pub, "--trusted-root", stack.TrustedRootPath, "--use-signed-timestamps", "--insecure-ignore-tlog", ref)

	// The same policy on an image signed without a TSA (both formats).
	reg2 := testutil.StartRegistry(t)
	ref2, _, pub2, _ := signedRun(t, reg2, "")
	policy2 := writeFile(t, vdir, "ts2.yaml", fmt.Sprintf("keys: [%s]\ntrusted_root: %s\nrequire_timestamp: true\n", pub2, stack.TrustedRootPath))
	if v := slipway(t, vdir, nil, "verify", "--policy", policy2, ref2); v.code != 3 {
		t.Fatalf("verify require_timestamp of untimestamped signatures: %s, want exit 3", v)
	}
}
