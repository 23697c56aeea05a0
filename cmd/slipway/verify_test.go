package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
)

// testKeysDir is testdata/keys, made absolute before any test changes
// the working directory.
var testKeysDir, _ = filepath.Abs(filepath.Join("..", "..", "testdata", "keys"))

// testKeyFile is testdata/keys/<file> (password slipway-test-password).
func testKeyFile(t *testing.T, file string) string {
	t.Helper()
	return filepath.Join(testKeysDir, file)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushSigned pushes a random index to host/team/<repo>:latest, signs it
// with testdata/keys/<key>.key and, when scanned is not zero, attaches a
// vuln attestation of a clean scan that finished then.
func pushSigned(t *testing.T, host, repo, key string, scanned time.Time) name.Digest {
	t.Helper()
	ctx := context.Background()
	k, err := sign.LoadPrivateKeyContext(context.Background(), testKeyFile(t, key+".key"), func(bool) ([]byte, error) { return []byte("slipway-test-password"), nil })
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(host + "/team/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r.Tag("latest"), idx); err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	keyed, err := sign.NewKeyed(k)
	if err != nil {
		t.Fatal(err)
	}
	var opts []sign.SignOption
	if !scanned.IsZero() {
		opts = append(opts, sign.WithVulnReport(&scan.Report{
			Subject: h.String(), Scanner: scan.ScannerInfo{Name: "trivy", Version: "0.74.0"},
			DB:        scan.DBInfo{SchemaVersion: 2, UpdatedAt: scanned.Add(-time.Hour)},
			StartedAt: scanned.Add(-time.Second), FinishedAt: scanned, Platforms: []string{"linux/amd64"},
			TrivyReport: json.RawMessage(`{"SchemaVersion":2,"ArtifactName":"` + h.String() + `","ArtifactType":"container_image","Results":[]}`),
		}))
	}
	sigs, err := keyed.Sign(ctx, idx, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.WriteRemote(ctx, r, sigs, nil, nil); err != nil {
		t.Fatal(err)
	}
	return r.Digest(h.String())
}

// runIn runs slipway in-process with dir as the working directory and
// returns stdout, stderr (with the error, as main prints it) and the exit
// code.
func runIn(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	t.Chdir(dir)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	root := newRoot(&globalFlags{})
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&errb, err)
	}
	return out.String(), errb.String(), exitCode(err)
}

// Issue 9 item 1: `cd attacker-checkout && slipway verify --policy
// /secure/policy.yaml IMG` must read the policy's keys from the policy's
// directory, not from the checkout.
func TestVerifyPolicyKeysRelativeToPolicyFile(t *testing.T) {
	reg := testutil.StartRegistry(t)
	// The image is signed only by the attacker ("other" key).
	img := pushSigned(t, reg.Host, "app", "other", time.Time{})

	secure := t.TempDir()
	policy := filepath.Join(secure, "policy.yaml")
	if err := os.WriteFile(policy, []byte("keys: [trusted.pub]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secure, "trusted.pub"), readFile(t, testKeyFile(t, "cosign.pub")), 0o644); err != nil {
		t.Fatal(err)
	}
	checkout := t.TempDir()
	if err := os.WriteFile(filepath.Join(checkout, "trusted.pub"), readFile(t, testKeyFile(t, "other.pub")), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runIn(t, checkout, nil, "verify", "--policy", policy, img.String())
	if code != exitPolicy || out != "" {
		t.Fatalf("attacker-signed image with the attacker's trusted.pub in the working directory: exit %d, want 3\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// The image signed by the real key passes with the same policy, from
	// the same directory.
	good := pushSigned(t, reg.Host, "good", "cosign", time.Time{})
	if out, errOut, code := runIn(t, checkout, nil, "verify", "--policy", policy, good.String()); code != exitOK || strings.TrimSpace(out) != good.String() {
		t.Fatalf("good image: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// A relative --policy path works the same way.
	if _, errOut, code := runIn(t, filepath.Dir(secure), nil, "verify", "--policy", filepath.Join(filepath.Base(secure), "policy.yaml"), good.String()); code != exitOK {
		t.Fatalf("relative --policy: exit %d\n%s", code, errOut)
	}

	// A missing key file is a config error naming the policy file and key,
	// even when the working directory has a file of that name.
	if err := os.Remove(filepath.Join(secure, "trusted.pub")); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runIn(t, checkout, nil, "verify", "--policy", policy, good.String())
	if code != exitUsage || !strings.Contains(errOut, policy+":1: policy.keys[0]:") || !strings.Contains(errOut, filepath.Join(secure, "trusted.pub")) {
		t.Fatalf("missing key: exit %d, want 2 naming %s and policy.keys[0]\n%s", code, policy, errOut)
	}
}

// Issue 9 item 1: keys may be inline PEM or env://VAR, so a policy need not
// depend on files at all.
func TestVerifyPolicyInlineAndEnvKeys(t *testing.T) {
	reg := testutil.StartRegistry(t)
	good := pushSigned(t, reg.Host, "good", "cosign", time.Time{})
	pub := readFile(t, testKeyFile(t, "cosign.pub"))
	dir := t.TempDir()
	var inline strings.Builder
	inline.WriteString("keys:\n  - |\n")
	for _, l := range strings.Split(strings.TrimSpace(string(pub)), "\n") {
		inline.WriteString("    " + l + "\n")
	}
	for name, c := range map[string]struct {
		policy string
		env    []string
	}{
		"inline": {inline.String(), nil},
		"env":    {"keys: [env://TRUSTED_KEY]\n", []string{"TRUSTED_KEY=" + string(pub)}},
	} {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(c.policy), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := runIn(t, dir, c.env, "verify", "--policy", p, good.String()); code != exitOK || strings.TrimSpace(out) != good.String() {
			t.Fatalf("%s key: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
		}
	}
}

// Issue 9 item 1: relative paths in slipway.yaml are relative to its
// directory; the same path from a flag is relative to the working directory.
func TestConfigPathsRelativeToConfigFile(t *testing.T) {
	lc, err := load(t, `ca_certificates: certs/ca.pem
base_policy: {keys: [keys/base.pub]}
sign: {key: keys/cosign.key}
scan: {ignore_file: .trivyignore.yaml, db: {dir: trivy}}
policy: {keys: [keys/trusted.pub, env://K]}
targets: [{name: hello}]
`, "--scan-cache-dir", "scancache")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	for _, c := range [][2]string{
		{lc.CACertificates, filepath.Join(lc.Dir, "certs/ca.pem")},
		{lc.BasePolicy.Keys[0], filepath.Join(lc.Dir, "keys/base.pub")},
		{lc.Sign.Key, filepath.Join(lc.Dir, "keys/cosign.key")},
		{lc.Scan.IgnoreFile, filepath.Join(lc.Dir, ".trivyignore.yaml")},
		{lc.Scan.DB.Dir, filepath.Join(lc.Dir, "trivy")},
		{lc.Policy.Keys[0], filepath.Join(lc.Dir, "keys/trusted.pub")},
		{lc.Policy.Keys[1], "env://K"},
		{lc.Scan.CacheDir, filepath.Join(wd, "scancache")},
	} {
		if c[0] != c[1] {
			t.Errorf("got %q, want %q", c[0], c[1])
		}
	}
	if wd == lc.Dir {
		t.Fatal("test needs the config outside the working directory")
	}
}

// Issue 9 item 2: an invalid field in a policy file is exit 2 with the
// file, line and key.
func TestVerifyPolicyInvalidFieldsExit2(t *testing.T) {
	dir := t.TempDir()
	pub := testKeyFile(t, "cosign.pub")
	for name, c := range map[string]struct{ policy, want string }{
		"threshold above keys": {"keys: [" + pub + "]\nthreshold: 2\n", ":2: policy.threshold:"},
		"negative threshold":   {"keys: [" + pub + "]\nthreshold: -1\n", ":2: policy.threshold:"},
		"same key twice":       {"keys: [" + pub + ", " + pub + "]\nthreshold: 2\n", ":2: policy.threshold: 2 is more than the 1 distinct"},
		"unknown attestation":  {"keys: [" + pub + "]\nrequire_attestations: [vulnerabilities]\n", ":2: policy.require_attestations[0]:"},
		"negative scan age":    {"keys: [" + pub + "]\nmax_scan_age: -5m\n", ":2: policy.max_scan_age:"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(c.policy), 0o644); err != nil {
			t.Fatal(err)
		}
		// No registry: the policy is checked before any request.
		_, errOut, code := runIn(t, dir, nil, "verify", "--policy", p, "127.0.0.1:1/team/app:latest")
		if code != exitUsage || !strings.Contains(errOut, p+c.want) {
			t.Errorf("%s: exit %d, want 2 naming %s%s\n%s", name, code, p, c.want, errOut)
		}
	}
}

// Issue 9 item 3: when a policy requires the vuln attestation,
// max_scan_age defaults to 168h (the rollback window), 0 turns it off, and
// verify reports the scan time it relied on.
func TestVerifyScanAgeDefaultBoundsRollback(t *testing.T) {
	reg := testutil.StartRegistry(t)
	scanned := time.Now().Add(-200 * time.Hour).UTC().Truncate(time.Second)
	stale := pushSigned(t, reg.Host, "stale", "cosign", scanned)
	dir := t.TempDir()
	pub := testKeyFile(t, "cosign.pub")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	def := write("default.yaml", "keys: ["+pub+"]\nrequire_attestations: [vuln]\n")
	off := write("off.yaml", "keys: ["+pub+"]\nrequire_attestations: [vuln]\nmax_scan_age: 0\n")

	out, errOut, code := runIn(t, dir, nil, "verify", "--policy", def, stale.String())
	if code != exitPolicy || out != "" || !strings.Contains(errOut, "older than the maximum 168h0m0s") {
		t.Fatalf("stale vuln attestation with the default max_scan_age: exit %d, want 3\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "finished "+scanned.Format(time.RFC3339)) {
		t.Errorf("the scan time relied on is not reported:\n%s", errOut)
	}
	out, errOut, code = runIn(t, dir, nil, "verify", "--policy", off, stale.String())
	if code != exitOK || strings.TrimSpace(out) != stale.String() {
		t.Fatalf("max_scan_age: 0: exit %d, want 0\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "vulnerability scan relied on: finished "+scanned.Format(time.RFC3339)) || !strings.Contains(errOut, "max_scan_age is off") {
		t.Errorf("human output does not report the scan time:\n%s", errOut)
	}
	// JSON reports it too.
	out, errOut, code = runIn(t, dir, nil, "verify", "--policy", def, stale.String(), "--output", "json")
	var v struct {
		Passed bool `json:"passed"`
		Scan   *struct {
			FinishedOn time.Time `json:"finishedOn"`
			MaxAge     string    `json:"maxAge"`
		} `json:"scan"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitPolicy {
		t.Fatalf("json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if v.Passed || v.Scan == nil || !v.Scan.FinishedOn.Equal(scanned) || v.Scan.MaxAge != "168h0m0s" {
		t.Fatalf("json verdict does not report the scan relied on: %s", out)
	}
	// A fresh scan passes with the default.
	fresh := pushSigned(t, reg.Host, "fresh", "cosign", time.Now().Add(-time.Hour))
	if out, errOut, code := runIn(t, dir, nil, "verify", "--policy", def, fresh.String()); code != exitOK || strings.TrimSpace(out) != fresh.String() {
		t.Fatalf("fresh scan: exit %d\n%s\n%s", code, out, errOut)
	}
}

// Issue 9 item 1: an oci:DIR base in slipway.yaml is read relative to the
// config file, and recorded as written (images do not depend on where the
// config lives).
func TestLayoutBaseRelativeToConfigFile(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	lc, err := load(t, "base: oci:base\ntargets: [{name: hello}]\n")
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(filepath.Join(lc.Dir, "base"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	st, err := buildStages(lc, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	b, err := st.ResolveBase(context.Background(), lc.Base)
	if err != nil {
		t.Fatalf("resolving %s from another working directory: %v", lc.Base, err)
	}
	if b.Digest != want || b.Ref != "oci:base" || b.Name != "oci:base" {
		t.Fatalf("base = %s %s %s, want %s recorded as oci:base", b.Name, b.Ref, b.Digest, want)
	}
}

// Issue 9 item 3: max_scan_age from SLIPWAY_POLICY_MAX_SCAN_AGE, including
// 0 (off), overrides the file.
func TestMaxScanAgeFromEnv(t *testing.T) {
	cfg := "policy: {keys: [a.pub], require_attestations: [vuln], max_scan_age: 24h}\ntargets: [{name: hello}]\n"
	for _, c := range []struct {
		env  string
		want time.Duration
	}{{"0", 0}, {"", 24 * time.Hour}, {"0s", 0}, {"2h", 2 * time.Hour}} {
		env, want := c.env, c.want
		t.Setenv("SLIPWAY_POLICY_MAX_SCAN_AGE", env) // empty: unset for viper
		lc, err := load(t, cfg)
		if err != nil {
			t.Fatalf("SLIPWAY_POLICY_MAX_SCAN_AGE=%q: %v", env, err)
		}
		if got := lc.Policy.EffectiveMaxScanAge(); got != want {
			t.Errorf("SLIPWAY_POLICY_MAX_SCAN_AGE=%q: max scan age %s, want %s", env, got, want)
		}
	}
	t.Setenv("SLIPWAY_POLICY_MAX_SCAN_AGE", "soon")
	if _, err := load(t, cfg); exitCode(err) != exitUsage {
		t.Fatalf("invalid SLIPWAY_POLICY_MAX_SCAN_AGE: err = %v, want a usage error", err)
	}
}

// A sign.key file that does not exist is a config error naming the key.
func TestMissingSignKeyIsConfigError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slipway.yaml")
	if err := os.WriteFile(cfg, []byte("sign: {key: keys/cosign.key}\ntargets: [{name: hello}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The working directory has a key of that name: it must not be used.
	wd := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, "keys", "cosign.key"), readFile(t, testKeyFile(t, "other.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runIn(t, wd, []string{"COSIGN_PASSWORD=slipway-test-password"}, "--config", cfg, "sign", "127.0.0.1:1/team/app@sha256:"+strings.Repeat("a", 64))
	if code != exitUsage || !strings.Contains(errOut, cfg+": sign.key:") || !strings.Contains(errOut, filepath.Join(dir, "keys", "cosign.key")) {
		t.Fatalf("exit %d, want 2 naming %s and sign.key\n%s", code, cfg, errOut)
	}
}

// Issue 14 item 8: --cache-dir is slipway's cache (cache_dir) and
// --scan-cache-dir the per-layer scan cache (scan.cache_dir).
func TestCacheDirFlags(t *testing.T) {
	lc, err := load(t, "targets: [{name: hello}]\n", "--cache-dir", "mine", "--scan-cache-dir", "layers")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if lc.CacheDir != filepath.Join(wd, "mine") || lc.Scan.CacheDir != filepath.Join(wd, "layers") {
		t.Fatalf("cache_dir %q, scan.cache_dir %q", lc.CacheDir, lc.Scan.CacheDir)
	}
}
