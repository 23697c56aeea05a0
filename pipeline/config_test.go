package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeStrict(f, data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := c.Validate(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDecodeStrictErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown top key", "repositry: x\n", `f.yaml:1: repositry: unknown key`},
		{"unknown top key after x-", "x-a: 1\nplatforms: [linux/amd64]\nrepositry: x\n", `f.yaml:3: repositry: unknown key`},
		{"unknown target key", "targets:\n  - name: a\n    mian: .\n", `f.yaml:3: targets[].mian: unknown key`},
		{"unknown image key", "targets:\n  - name: a\n    image:\n      usr: x\n", `f.yaml:4: targets[].image.usr: unknown key`},
		{"unknown scan key", "scan:\n  db:\n    path: x\n", `f.yaml:3: scan.db.path: unknown key`},
		{"wrong type", "platforms: 5\n", `f.yaml:1: platforms: wrong type`},
		{"wrong nested type", "targets:\n  - name: a\n    tags: {a: b}\n", `f.yaml:3: tags: wrong type`},
		{"bad duration", "scan:\n  db:\n    max_age: soon\n", `f.yaml:3: max_age: wrong type`},
		{"bad yaml", "targets: [\n", `f.yaml`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeStrict("f.yaml", []byte(c.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *ConfigError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q, want %q", err, c.want)
			}
		})
	}
	if c, err := DecodeStrict("empty.yaml", nil); err != nil || c == nil {
		t.Fatalf("empty file: %v", err)
	}
}

// Issue 14 item 8: top-level x-* keys are allowed and ignored, so they can
// hold YAML anchors that targets merge, as in docker-compose files.
func TestDecodeExtensionKeys(t *testing.T) {
	c, err := DecodeStrict("f.yaml", []byte(`x-common: &common
  main: ./cmd/app
  ldflags: ["-s", "-w"]
x-note: free text
targets:
  - name: a
    <<: *common
  - name: b
    <<: *common
    main: ./cmd/b
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 2 || c.Targets[0].Main != "./cmd/app" || c.Targets[1].Main != "./cmd/b" || len(c.Targets[1].Ldflags) != 2 {
		t.Fatalf("targets %+v", c.Targets)
	}
	if c.Extensions != nil {
		t.Errorf("x- keys kept in the config: %v", c.Extensions)
	}
}

func TestValidate(t *testing.T) {
	base := "targets:\n  - name: hello\n    main: ./cmd/hello\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"ok", base, ""},
		{"bad platform", "platforms: [linux/sparc]\n" + base, "platforms[0]"},
		{"bad name", "targets:\n  - name: Hello\n", "targets[0].name"},
		{"dup name", "targets:\n  - name: a\n  - name: a\n", "duplicate target"},
		{"bad repository", "repository: 'UP/Case'\n" + base, "repository"},
		{"bad base", "base: 'a b'\n" + base, "base"},
		{"bad port", "targets:\n  - name: a\n    image: {ports: [99999]}\n", "image.ports[0]"},
		{"bad severity", "scan: {severity: [SEVERE]}\n" + base, "scan.severity[0]"},
		{"bad report", "scan: {reports: [{format: pdf, output: x}]}\n" + base, "scan.reports[0].format"},
		{"allow_unjudged", "scan: {allow_unjudged: [no-package-db, db-from-future]}\n" + base, ""},
		{"bad allow_unjudged", "scan: {allow_unjudged: [unknown-os, sometimes]}\n" + base, "scan.allow_unjudged[1]: unknown entry \"sometimes\""},
		{"attest without key", "sign: {attestations: [sbom]}\n" + base, "sign.attestations"},
		{"bad on_failure", "on_failure: maybe\n" + base, "on_failure"},
		{"threshold > keys", "policy: {keys: [a.pub], threshold: 2}\n" + base, "policy.threshold"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate("f.yaml")
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.OCILayout != DefaultOCILayout || cfg.Platforms[0] != DefaultPlatform || cfg.Targets[0].Tags[0] != "latest" || cfg.OnFailure != OnFailureAbort {
					t.Fatalf("defaults not applied: %+v", cfg)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("err = %v, want a *ConfigError naming f.yaml and %q", err, c.want)
			}
		})
	}
}

func TestPlanTemplates(t *testing.T) {
	dir := t.TempDir()
	cfgText := `repository: 127.0.0.1:5000/team
source: "https://example.com/{{.Target}}"
sign:
  annotations: {target: "{{.Target}}"}
targets:
  - name: hello
    ldflags: ["-X main.v={{.Env.V}}"]
    tags: [latest, "v{{.Env.V}}", "{{.Date}}"]
    image:
      env: {MODE: "{{.Env.V}}"}
`
	c, err := DecodeStrict("f.yaml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate("f.yaml"); err != nil {
		t.Fatal(err)
	}
	_, err = Plan(context.Background(), c, PlanOptions{ConfigDir: dir, Environ: []string{"V=7", "SOURCE_DATE_EPOCH=10"}})
	// {{.Date}} is RFC 3339 with colons: not a valid tag.
	if err == nil || !strings.Contains(err.Error(), "targets[0].tags[2]") {
		t.Fatalf("err = %v, want the invalid tag named", err)
	}
	c.Targets[0].Tags = c.Targets[0].Tags[:2]
	jobs, err := Plan(context.Background(), c, PlanOptions{ConfigDir: dir, Environ: []string{"V=7", "SOURCE_DATE_EPOCH=10"}})
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if got := strings.Join(j.Tags, ","); got != "latest,v7" {
		t.Errorf("tags = %s", got)
	}
	if j.Target.Ldflags[0] != "-X main.v=7" || j.Target.Image.Env["MODE"] != "7" || j.Target.Source != "https://example.com/hello" {
		t.Errorf("templates not expanded: %+v", j.Target)
	}
	if j.Target.Created.Unix() != 10 || j.SignAnnotations["target"] != "hello" {
		t.Errorf("created = %v, sign annotations = %v", j.Target.Created, j.SignAnnotations)
	}
	if j.Repository.String() != "127.0.0.1:5000/team/hello" {
		t.Errorf("repository = %s", j.Repository)
	}
	_, err = Plan(context.Background(), c, PlanOptions{ConfigDir: dir, Environ: nil})
	if err == nil || !strings.Contains(err.Error(), "targets[0].tags") {
		t.Fatalf("missing env var: err = %v", err)
	}
	_, err = Plan(context.Background(), c, PlanOptions{ConfigDir: dir, Select: []string{"nope"}, Environ: []string{"V=1"}})
	if err == nil || !strings.Contains(err.Error(), `no target named "nope"`) {
		t.Fatalf("unknown selected target: err = %v", err)
	}
}

func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{"", "targets:\n  - name: a\n", "platforms: [linux/amd64]\nscan: {db: {max_age: 1h}}\n", "x: [", "targets: 5"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeStrict("fuzz.yaml", data)
		if err != nil {
			return
		}
		_ = c.Validate("fuzz.yaml")
	})
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"v{{.Env.V}}", "{{.Git.ShortCommit}}", "{{", "{{.Nope}}", "{{range .Env}}{{.}}{{end}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Expand(s, TemplateData{Env: map[string]string{"V": "1"}})
	})
}

// Provenance records a target's config under the keys slipway.yaml uses
// (issue 14 item 12: one key style), durations as written.
func TestTargetJSONKeys(t *testing.T) {
	tg := Target{Name: "hello", Dir: "services/hello", Main: "./cmd/hello",
		Files: []FileConfig{{Src: "conf", Dst: "/etc/app"}},
		Image: ImageConfig{Workdir: "/app", Healthcheck: &HealthcheckConfig{Test: []string{"/app/hello", "-health"}, Interval: ConfigDuration(30 * time.Second), StartPeriod: ConfigDuration(2 * time.Second)}}}
	b, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"hello"`, `"dir":"services/hello"`, `"main":"./cmd/hello"`, `"src":"conf"`, `"dst":"/etc/app"`,
		`"workdir":"/app"`, `"interval":"30s"`, `"start_period":"2s"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if strings.ContainsAny(string(b), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Errorf("a key is not the config's: %s", b)
	}
}
