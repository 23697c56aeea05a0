package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// WriteModule is writeModule, for the external tests.
var WriteModule = writeModule

// writeModule writes a module example.com/m in dir with a package main at
// ./cmd/app and a library at ./lib.
func writeModule(t *testing.T, dir string) {
	t.Helper()
	for name, content := range map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.26\n",
		"cmd/app/main.go": "package main\n\nvar version string\n\nfunc main() { println(version) }\n",
		"lib/lib.go":      "package lib\n\nfunc F() int { return 1 }\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func plan(t *testing.T, dir, cfgText string, environ []string, log *slog.Logger) ([]Job, error) {
	t.Helper()
	c, err := DecodeStrict("f.yaml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate("f.yaml"); err != nil {
		return nil, err
	}
	return Plan(context.Background(), c, PlanOptions{ConfigDir: dir, Environ: environ, Logger: log})
}

// wantConfigError fails unless err is a *ConfigError whose key is key and
// whose message contains every one of want.
func wantConfigError(t *testing.T, err error, key string, want ...string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConfigError for %s", err, key)
	}
	if ce.Key != key {
		t.Fatalf("err = %v, want key %s", err, key)
	}
	for _, w := range want {
		if !strings.Contains(ce.Msg, w) {
			t.Fatalf("err = %v, want it to say %q", err, w)
		}
	}
}

// Issue 9 item 8: what would give an image that cannot run, or a binary
// the gate does not judge, is a config error naming file, target and key,
// and saying what to do instead.
func TestValidateRefusesBuildSettings(t *testing.T) {
	for _, c := range []struct{ name, target, key, want string }{
		{"cgo", "env: [CGO_ENABLED=1]", "targets[0].env[0]", "static"},
		{"goos", "env: [GOOS=windows]", "targets[0].env[0]", "platforms:"},
		{"goarch", "env: [A=1, GOARCH=arm64]", "targets[0].env[1]", "platforms:"},
		{"goarm", "env: [GOARM=6]", "targets[0].env[0]", "linux/arm/v6"},
		{"goamd64", "env: [GOAMD64=v3]", "targets[0].env[0]", "linux/amd64/v3"},
		{"goflags ldflags", "env: ['GOFLAGS=-mod=mod -ldflags=-X=main.a=b']", "targets[0].env[0]", "ldflags:"},
		{"goflags toolexec", "env: [GOFLAGS=-toolexec=/bin/true]", "targets[0].env[0]", "-toolexec"},
		{"goflags buildvcs", "env: [GOFLAGS=-buildvcs=false]", "targets[0].env[0]", "-buildvcs=auto"},
		{"flag toolexec", "flags: [-tags=netgo, -toolexec=/x]", "targets[0].flags[1]", "-toolexec"},
		{"flag toolexec double dash", "flags: [--toolexec, /x]", "targets[0].flags[0]", "-toolexec"},
		{"flag ldflags", "flags: ['--ldflags=-X main.a=b']", "targets[0].flags[0]", "ldflags:"},
		{"flag o", "flags: [-o, /tmp/x]", "targets[0].flags[0]", "/app/<target>"},
		{"flag o=", "flags: [-o=/tmp/x]", "targets[0].flags[0]", "/app/<target>"},
		{"flag buildmode", "flags: [-buildmode=c-archive]", "targets[0].flags[0]", "static executable"},
		{"flag buildmode double dash", "flags: [--buildmode, pie]", "targets[0].flags[0]", "static executable"},
		{"flag buildvcs", "flags: [-buildvcs=false]", "targets[0].flags[0]", "-buildvcs=auto"},
		{"windows platform", "platforms: [windows/amd64]", "targets[0].platforms[0]", "Linux images only"},
		{"secret env", "env: [COSIGN_PASSWORD=x]", "targets[0].env[0]", "credential"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := DecodeStrict("f.yaml", []byte("targets:\n  - name: a\n    "+c.target+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate("f.yaml")
			wantConfigError(t, err, c.key, c.want)
			if !strings.HasPrefix(err.Error(), "f.yaml: "+c.key+": ") {
				t.Fatalf("err = %v, want it to name f.yaml and %s", err, c.key)
			}
		})
	}
	cfg, err := DecodeStrict("f.yaml", []byte("platforms: [windows/arm64]\ntargets:\n  - name: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantConfigError(t, cfg.Validate("f.yaml"), "platforms[0]", "linux/arm64")
	// What stays allowed.
	cfg, err = DecodeStrict("f.yaml", []byte("targets:\n  - name: a\n    flags: [-tags=netgo, -mod=mod, -gcflags=all=-N]\n    env: [GOFLAGS=-mod=mod, GOPRIVATE=x, GOEXPERIMENT=loopvar]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate("f.yaml"); err != nil {
		t.Fatal(err)
	}
}

// Issue 9 item 8: main: must be one package main (go build of a library
// writes an archive, which was pushed as the image's entrypoint).
func TestPlanRefusesNonMainPackage(t *testing.T) {
	dir := t.TempDir()
	writeModule(t, dir)
	_, err := plan(t, dir, "targets:\n  - name: a\n    main: ./lib\n", nil, nil)
	wantConfigError(t, err, "targets[0].main", "./lib is package lib (example.com/m/lib), not a package main", "set main:")
	_, err = plan(t, dir, "targets:\n  - name: a\n    main: ./cmd/app\n  - name: b\n    main: ./lib\n", nil, nil)
	wantConfigError(t, err, "targets[1].main", "./lib is package lib")
	_, err = plan(t, dir, "targets:\n  - name: a\n    main: ./...\n", nil, nil)
	wantConfigError(t, err, "targets[0].main", "names 2 packages")
	jobs, err := plan(t, dir, "targets:\n  - name: a\n    main: ./cmd/app\n", nil, nil)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("package main refused: %v", err)
	}
}

// Issue 9 item 8: ldflags may not overwrite the build info scanners read,
// also when a template smuggles the flag in.
func TestPlanRefusesRuntimeLdflags(t *testing.T) {
	dir := t.TempDir()
	writeModule(t, dir)
	for _, c := range []struct{ ldflags, env, sym string }{
		{`["-X runtime.modinfo=x"]`, "", "runtime.modinfo"},
		{`["-X=runtime/debug.modinfo=x"]`, "", "runtime/debug.modinfo"},
		{`["--X", "'runtime/debug.x=a b'"]`, "", "runtime/debug.x"},
		{`["-X main.version={{.Env.V}}"]`, "V=1 -X runtime.modinfo=evil", "runtime.modinfo"},
	} {
		_, err := plan(t, dir, "targets:\n  - name: a\n    main: ./cmd/app\n    ldflags: "+c.ldflags+"\n", []string{c.env}, nil)
		wantConfigError(t, err, "targets[0].ldflags", "-X "+c.sym+" is not allowed", "main.version")
	}
	jobs, err := plan(t, dir, "targets:\n  - name: a\n    main: ./cmd/app\n    ldflags: ['-X main.version={{.Env.V}}', '-X \"main.x=runtime.modinfo\"']\n", []string{"V=1.0"}, nil)
	if err != nil || jobs[0].Target.Ldflags[0] != "-X main.version=1.0" {
		t.Fatalf("own variables refused: %v", err)
	}
}

// Issue 9 item 9: templates cannot read slipway's secrets, however they are
// written, and the build target carries the sign.key variable as a secret.
func TestPlanRefusesSecretTemplates(t *testing.T) {
	dir := t.TempDir()
	environ := []string{"COSIGN_PASSWORD=pw-sentinel", "MY_SIGNING_KEY=key-sentinel", "SIGSTORE_ID_TOKEN=tok-sentinel",
		"SLIPWAY_REGISTRY_PASSWORD=reg-sentinel", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=gh-sentinel", "V=1"}
	for _, c := range []struct{ field, tmpl, secret string }{
		{"tags", "{{.Env.COSIGN_PASSWORD}}", "COSIGN_PASSWORD"},
		{"ldflags", "-X main.k={{.Env.MY_SIGNING_KEY}}", "MY_SIGNING_KEY"},
		{"tags", `{{index .Env "SIGSTORE_ID_TOKEN"}}`, "SIGSTORE_ID_TOKEN"},
		{"tags", "{{with .Env}}{{.SLIPWAY_REGISTRY_PASSWORD}}{{end}}", "SLIPWAY_REGISTRY_PASSWORD"},
		{"ldflags", "-X main.k={{$.Env.ACTIONS_ID_TOKEN_REQUEST_TOKEN}}", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"},
	} {
		cfg := "sign: {key: env://MY_SIGNING_KEY}\ntargets:\n  - name: a\n    " + c.field + ": ['" + c.tmpl + "']\n"
		_, err := plan(t, dir, cfg, environ, nil)
		wantConfigError(t, err, "targets[0]."+c.field, c.secret, "credential")
		if strings.Contains(err.Error(), "sentinel") {
			t.Fatalf("error shows the secret: %v", err)
		}
	}
	// A template that walks the whole environment sees no secret.
	jobs, err := plan(t, dir, "sign: {key: env://MY_SIGNING_KEY}\ntargets:\n  - name: a\n    ldflags: ['-X main.all={{range $k, $v := .Env}}{{$v}},{{end}}']\n", environ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs[0].Target.Ldflags[0]; strings.Contains(got, "sentinel") || !strings.Contains(got, "1,") {
		t.Fatalf("ldflags = %q", got)
	}
	if s := jobs[0].Target.SecretEnv; len(s) != 1 || s[0] != "MY_SIGNING_KEY" {
		t.Fatalf("target SecretEnv = %v, want the sign.key variable", s)
	}
	// The Trivy server's token variable is as secret as the key's.
	environ = append(environ, "TRIVY_TOKEN=srv-sentinel")
	srv := "scan: {server: 'http://127.0.0.1:4954', server_token_env: TRIVY_TOKEN}\n"
	_, err = plan(t, dir, srv+"targets:\n  - name: a\n    tags: ['{{.Env.TRIVY_TOKEN}}']\n", environ, nil)
	wantConfigError(t, err, "targets[0].tags", "TRIVY_TOKEN", "credential")
	if jobs, err = plan(t, dir, srv+"sign: {key: env://MY_SIGNING_KEY}\ntargets:\n  - name: a\n", environ, nil); err != nil {
		t.Fatal(err)
	}
	if s := jobs[0].Target.SecretEnv; !slices.Equal(s, []string{"MY_SIGNING_KEY", "TRIVY_TOKEN"}) {
		t.Fatalf("target SecretEnv = %v, want the sign.key and scan.server_token_env variables", s)
	}
}

// Issue 9 item 10: {{.Git.Dirty}} is what go build stamps as vcs.modified:
// untracked files count, ignored ones do not.
func TestReadGitDirtyAsGoBuild(t *testing.T) {
	dir := t.TempDir()
	testutil.Git(t, dir, "init", "-q")
	writeModule(t, dir)
	testutil.Git(t, dir, "add", "-A")
	testutil.Git(t, dir, "commit", "-qm", "one")
	ctx := context.Background()
	if ReadGit(ctx, dir).Dirty {
		t.Fatal("clean tree is dirty")
	}
	if err := os.WriteFile(filepath.Join(dir, "untracked.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !ReadGit(ctx, dir).Dirty {
		t.Fatal("untracked file: Dirty = false, but go build stamps vcs.modified=true")
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "info", "exclude"), []byte("untracked.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ReadGit(ctx, dir).Dirty {
		t.Fatal("ignored file: Dirty = true")
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !ReadGit(ctx, dir).Dirty {
		t.Fatal("modified tracked file: Dirty = false")
	}
}

// Issue 9 item 12: {{.Git.Tag}} is only a tag at HEAD; on a later commit it
// is empty, the tag built from it is skipped with a warning naming the
// template, and there is no version annotation.
func TestPlanTagOnlyAtHEAD(t *testing.T) {
	dir := t.TempDir()
	testutil.Git(t, dir, "init", "-q")
	writeModule(t, dir)
	testutil.Git(t, dir, "add", "-A")
	testutil.Git(t, dir, "commit", "-qm", "one")
	testutil.Git(t, dir, "tag", "v1.11.0")
	cfg := "targets:\n  - name: a\n    main: ./cmd/app\n    tags: [latest, '{{.Git.Tag}}']\n"
	ctx := context.Background()
	if g := ReadGit(ctx, dir); g.Tag != "v1.11.0" {
		t.Fatalf("tag at HEAD = %q", g.Tag)
	}
	jobs, err := plan(t, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(jobs[0].Tags, ","); got != "latest,v1.11.0" || jobs[0].Target.Version != "v1.11.0" {
		t.Fatalf("tagged HEAD: tags = %s, version = %q", got, jobs[0].Target.Version)
	}

	if err := os.WriteFile(filepath.Join(dir, "x.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Git(t, dir, "add", "-A")
	testutil.Git(t, dir, "commit", "-qm", "two")
	if g := ReadGit(ctx, dir); g.Tag != "" {
		t.Fatalf("tag of a commit after v1.11.0 = %q, want none", g.Tag)
	}
	var logs bytes.Buffer
	jobs, err = plan(t, dir, cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(jobs[0].Tags, ","); got != "latest" || jobs[0].Target.Version != "" {
		t.Fatalf("untagged HEAD: tags = %s, version = %q", got, jobs[0].Target.Version)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "{{.Git.Tag}}") || !strings.Contains(logs.String(), "targets[0].tags[1]") {
		t.Fatalf("no warning naming the template: %q", logs.String())
	}
	// A literal empty tag stays an error.
	_, err = plan(t, dir, "targets:\n  - name: a\n    main: ./cmd/app\n    tags: ['']\n", nil, nil)
	wantConfigError(t, err, "targets[0].tags[0]", "not a valid tag")
}
