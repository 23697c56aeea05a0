package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/publish"
)

// Issue 9 item 2: an invalid value in a policy file is a config error
// (exit 2) naming the file, the line and the key, as in slipway.yaml.
func TestDecodePolicyFileInvalidValues(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"threshold above keys", "keys: [a.pub, b.pub]\nthreshold: 3\n", "p.yaml:2: policy.threshold: 3 is more than the 2 keys"},
		{"negative threshold", "keys: [a.pub]\nthreshold: -1\n", "p.yaml:2: policy.threshold:"},
		{"unknown attestation", "keys: [a.pub]\nrequire_attestations:\n  - sbom\n  - vulns\n", "p.yaml:4: policy.require_attestations[1]:"},
		{"unknown severity", "keys: [a.pub]\nmax_severity: SEVERE\n", "p.yaml:2: policy.max_severity:"},
		{"negative scan age", "keys: [a.pub]\nmax_scan_age: -1h\n", "p.yaml:2: policy.max_scan_age:"},
		{"bad base digest", "keys: [a.pub]\nallowed_base_digests: [sha256:beef]\n", "p.yaml:2: policy.allowed_base_digests[0]:"},
		{"empty key", "keys: [a.pub, '']\n", "p.yaml:1: policy.keys[1]:"},
		{"unanchored identity", "identities:\n  - issuer: https://i\n    subject_regexp: '@example\\.com$'\n", "p.yaml:3: policy.identities[0].subject_regexp: regexp"},
		{"identity half anchored", "identities:\n  - issuer_regexp: '^https://i'\n    subject: a@b\n", "p.yaml:2: policy.identities[0].issuer_regexp:"},
		{"identity subject twice", "identities:\n  - issuer: https://i\n    subject: a@b\n    subject_regexp: '^a$'\n", "p.yaml:3: policy.identities[0].subject:"},
		{"threshold above signers", "keys: [a.pub]\nidentities: [{issuer: https://i, subject: a@b}]\nthreshold: 3\n", "p.yaml:3: policy.threshold: 3 is more than the 2 keys and identities"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodePolicyFile("p.yaml", []byte(c.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err = %v, want a *ConfigError starting %q", err, c.want)
			}
		})
	}
	// The same checks apply to slipway.yaml's policy block.
	c, err := DecodeStrict("f.yaml", []byte("policy: {keys: [a.pub], require_attestations: [vulns]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate("f.yaml"); err == nil || !strings.Contains(err.Error(), "policy.require_attestations[0]") {
		t.Fatalf("slipway.yaml policy: err = %v", err)
	}
}

// Issue 11: the sign block's format and keyless settings are checked.
func TestValidateSignFormatAndKeyless(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown format", "sign: {key: k.key, format: bundles}\n", "sign.format: want both, bundle or legacy"},
		{"key and keyless", "sign: {key: k.key, keyless: true}\n", "sign.keyless: sign.key and sign.keyless are exclusive"},
		{"keyless legacy", "sign: {keyless: true, format: legacy}\n", "sign.format: keyless signing writes Sigstore bundles only"},
		{"bad Fulcio URL", "sign: {keyless: true, fulcio_url: 'fulcio:8080'}\n", "sign.fulcio_url: want an http(s) URL"},
		{"attestations keyless", "sign: {keyless: true, rekor_url: none, attestations: [sbom]}\n", ""},
		{"base identity", "base_policy: {identities: [{issuer: https://i, subject_regexp: 'x'}]}\n", "base_policy.identities[0].subject_regexp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate("f.yaml")
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a *ConfigError with %q", err, c.want)
			}
		})
	}
}

// Issue 9 item 3: max_scan_age defaults to 168h when the policy uses the
// vuln attestation; 0 turns it off.
func TestMaxScanAgeDefault(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
	}{
		{"keys: [a]\nrequire_attestations: [vuln]\n", DefaultMaxScanAge},
		{"keys: [a]\nmax_severity: high\n", DefaultMaxScanAge},
		{"keys: [a]\nrequire_attestations: [vuln]\nmax_scan_age: 0\n", 0},
		{"keys: [a]\nrequire_attestations: [vuln]\nmax_scan_age: 0s\n", 0},
		{"keys: [a]\nrequire_attestations: [vuln]\nmax_scan_age: 24h\n", 24 * time.Hour},
		{"keys: [a]\nrequire_attestations: [sbom]\n", 0},
		{"keys: [a]\n", 0},
	} {
		p, err := DecodePolicyFile("p.yaml", []byte(c.yaml))
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if got := p.EffectiveMaxScanAge(); got != c.want {
			t.Errorf("%q: max scan age %s, want %s", c.yaml, got, c.want)
		}
	}
	if DefaultMaxScanAge != 168*time.Hour {
		t.Fatalf("DefaultMaxScanAge = %s", DefaultMaxScanAge)
	}
}

func TestKeyLinePolicyAndAliases(t *testing.T) {
	data := []byte("repository: x\npolicy:\n  keys:\n    - a.pub\n    - b.pub\n  threshold: 2\nother: &o [1]\nalias: *o\n")
	for key, want := range map[string]int{
		"policy": 2, "policy.keys": 3, "policy.keys[1]": 5, "policy.threshold": 6,
		"policy.nope": 2, "policy.keys[9]": 3, "alias[0]": 7, "": 0,
	} {
		if got := KeyLine(data, key); got != want {
			t.Errorf("KeyLine(%q) = %d, want %d", key, got, want)
		}
	}
}

// Issue 9 item 1: relative input paths in the file are relative to the
// file's directory; values from flags or SLIPWAY_* to the working directory.
func TestResolvePaths(t *testing.T) {
	yaml := `ca_certificates: certs.pem
cache_dir: cache
base_policy: {keys: [base.pub, env://BASE_KEY]}
scan:
  ignore_file: .trivyignore.yaml
  db: {dir: db}
  cache_dir: /abs/scan
  reports: [{format: json, output: "reports/{{.Target}}.json"}, {format: table, output: "-"}]
sign: {key: cosign.key}
policy:
  keys:
    - trusted.pub
    - env://TRUSTED
    - |
      -----BEGIN PUBLIC KEY-----
      AAAA
      -----END PUBLIC KEY-----
`
	c, err := DecodeStrict("f.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	file := c.InputPaths()
	// As if --db-dir flagdb had been given.
	c.Scan.DB.Dir = "flagdb"
	c.OCILayout = DefaultOCILayout // as Validate fills it
	c.ResolvePaths(file, "/cfg", "/work")
	for _, pair := range [][2]string{
		{c.CACertificates, "/cfg/certs.pem"},
		{c.CacheDir, "/cfg/cache"},
		{c.BasePolicy.Keys[0], "/cfg/base.pub"},
		{c.BasePolicy.Keys[1], "env://BASE_KEY"},
		{c.Scan.IgnoreFile, "/cfg/.trivyignore.yaml"},
		{c.Scan.DB.Dir, "/work/flagdb"},
		{c.Scan.CacheDir, "/abs/scan"},
		{c.Sign.Key, "/cfg/cosign.key"},
		{c.Policy.Keys[0], "/cfg/trusted.pub"},
		{c.Policy.Keys[1], "env://TRUSTED"},
		{c.Policy.Keys[2][:10], "-----BEGIN"},
		{c.OCILayout, "/cfg/dist/oci"}, // the default, as the file's
		{c.Scan.Reports[0].Output, "/cfg/reports/{{.Target}}.json"},
		{c.Scan.Reports[1].Output, "-"},
		{ResolveLayoutBase("/cfg", "oci:base@sha256:x"), "oci:/cfg/base@sha256:x"},
		{ResolveLayoutBase("/cfg", "alpine"), "alpine"},
	} {
		if pair[0] != pair[1] {
			t.Errorf("got %q, want %q", pair[0], pair[1])
		}
	}
	// --oci-layout out: the working directory's.
	c = &Config{}
	file = c.InputPaths()
	c.OCILayout = "out"
	c.ResolvePaths(file, "/cfg", "/work")
	if c.OCILayout != "/work/out" {
		t.Errorf("flag oci_layout = %q, want /work/out", c.OCILayout)
	}
	for _, mode := range []string{"system", "none"} {
		c := &Config{CACertificates: mode}
		c.ResolvePaths(c.InputPaths(), "/cfg", "/work")
		if c.CACertificates != mode {
			t.Errorf("ca_certificates %s became %q", mode, c.CACertificates)
		}
	}
}

// Issue 9 item 13: tags that look like signature tags are refused.
func TestCheckTag(t *testing.T) {
	for _, ok := range []string{"latest", "v1.2.3", "sha256", "release-sig", "1.0.att-x", "abc123"} {
		if err := CheckTag(ok); err != nil {
			t.Errorf("CheckTag(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "sha256-" + strings.Repeat("a", 64), "sha256-abc", "SHA256-abc", "v1.sig", "x.att", "x.sbom", "a:b", "../x", strings.Repeat("t", 129)} {
		if err := CheckTag(bad); err == nil {
			t.Errorf("CheckTag(%q) passed", bad)
		}
	}
	if err := CheckTag("v1.sig"); !strings.Contains(err.Error(), "choose another tag") {
		t.Errorf("message does not say what to do: %v", err)
	}
}

func TestPlanRefusesSignatureTags(t *testing.T) {
	for _, tag := range []string{"sha256-{{.Env.D}}", "{{.Env.D}}.sig", "latest.att"} {
		c, err := DecodeStrict("f.yaml", []byte("targets:\n  - name: hello\n    tags: [latest, '"+tag+"']\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate("f.yaml"); err != nil {
			t.Fatal(err)
		}
		_, err = Plan(context.Background(), c, PlanOptions{ConfigDir: t.TempDir(), Environ: []string{"D=" + strings.Repeat("b", 64)}})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "targets[0].tags[1]" || !strings.Contains(err.Error(), "signature tag") {
			t.Fatalf("tag %q: err = %v, want a config error on targets[0].tags[1]", tag, err)
		}
	}
}

// Issue 9 item 13: push oci:DIR checks the target names and tags read from
// index.json as config names are checked, before writing anything (real
// docker-registry).
func TestPushLayoutRefusesBadNamesAndTags(t *testing.T) {
	reg := testutil.StartRegistry(t)
	idx, err := random.Index(256, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, target, tag string
	}{
		{"traversal in target", "../escape", "latest"},
		{"slash in target", "a/b", "latest"},
		{"signature tag", "zeta", "sha256-" + strings.Repeat("c", 64) + ".sig"},
		{"referrers tag", "zeta", "sha256-" + strings.Repeat("c", 64)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "oci")
			l, err := publish.NewLayout(dir)
			if err != nil {
				t.Fatal(err)
			}
			// A valid target first: nothing of it may be pushed either.
			if _, err := l.WriteIndex("alpha", idx, []string{"latest"}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.WriteIndex(c.target, idx, []string{c.tag}); err != nil {
				t.Fatal(err)
			}
			pub, err := publish.NewRegistry()
			if err != nil {
				t.Fatal(err)
			}
			repo := "team-" + strings.ReplaceAll(strings.ToLower(strings.ReplaceAll(c.name, " ", "-")), "/", "-")
			repoFor := func(target string) (name.Repository, error) {
				return TargetRepository(reg.Host+"/"+repo, target, nil)
			}
			_, err = PushLayout(context.Background(), l, pub, repoFor, nil, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != filepath.Join(dir, "index.json") {
				t.Fatalf("err = %v, want a *ConfigError naming %s/index.json", err, dir)
			}
			tags, err := remote.List(mustRepo(t, reg.Host+"/"+repo+"/alpha"))
			if err == nil && len(tags) > 0 {
				t.Fatalf("alpha was pushed (%v) before the bad entry was refused", tags)
			}
			if tags, err := remote.List(mustRepo(t, reg.Host+"/"+repo+"/zeta")); err == nil && len(tags) > 0 {
				t.Fatalf("zeta tags pushed: %v", tags)
			}
		})
	}
	// A clean layout still pushes.
	dir := filepath.Join(t.TempDir(), "oci")
	l, err := publish.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteIndex("alpha", idx, []string{"latest", "v1"}); err != nil {
		t.Fatal(err)
	}
	pub, err := publish.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	res, err := PushLayout(context.Background(), l, pub, func(target string) (name.Repository, error) {
		return TargetRepository(reg.Host+"/ok", target, nil)
	}, nil, nil)
	if err != nil || len(res.Targets) != 1 || !res.Targets[0].Pushed {
		t.Fatalf("clean layout: %+v, %v", res, err)
	}
	want, _ := idx.Digest()
	got, err := remote.Head(mustRepo(t, reg.Host+"/ok/alpha").Tag("v1"))
	if err != nil || got.Digest != want {
		t.Fatalf("pushed digest %v, want %s (%v)", got, want, err)
	}
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
