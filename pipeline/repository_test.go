package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// Issue 14 item 7: a target's repository is its whole repository (as ko's
// --bare); the others stay <repository>/<name>.
func TestTargetRepositoryOverride(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	dir := t.TempDir()
	writeModule(t, dir)
	jobs, err := plan(t, dir, `repository: registry.example.com/team
targets:
  - name: a
    main: ./cmd/app
  - name: b
    main: ./cmd/app
    repository: registry.example.com/apps/bee
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs[0].Repository.String(); got != "registry.example.com/team/a" {
		t.Errorf("a: %s", got)
	}
	if got := jobs[1].Repository.String(); got != "registry.example.com/apps/bee" {
		t.Errorf("b: %s", got)
	}
	// Without a top-level repository, only the target with its own has one.
	c := &Config{Targets: []Target{{Name: "a"}, {Name: "b", Repository: "registry.example.com/apps/bee"}}}
	if r, err := c.RepositoryFor("b", nil); err != nil || r.String() != "registry.example.com/apps/bee" {
		t.Errorf("RepositoryFor(b) = %v, %v", r, err)
	}
	if _, err := c.RepositoryFor("a", nil); err == nil {
		t.Error("RepositoryFor(a) without any repository succeeded")
	}
}

func TestTargetRepositoryInvalid(t *testing.T) {
	c, err := DecodeStrict("f.yaml", []byte("targets:\n  - name: a\n    repository: 'Not A Repo::'\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate("f.yaml")
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "targets[0].repository" || !strings.Contains(err.Error(), "can only contain") {
		t.Fatalf("err = %v, want targets[0].repository", err)
	}
	if line := KeyLine([]byte("targets:\n  - name: a\n    repository: 'Not A Repo::'\n"), ce.Key); line != 3 {
		t.Errorf("the key's line is %d, want 3", line)
	}
}

// Issue 14 item 4: platforms: [all] stands alone, and is planned as
// Target.AllPlatforms (expanded from the base once it is resolved).
func TestPlatformsAll(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"platforms: [all, linux/amd64]\ntargets: [{name: a}]\n", "platforms[0]"},
		{"targets: [{name: a, platforms: [linux/arm64, all]}]\n", "targets[0].platforms[1]"},
	} {
		cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		var ce *ConfigError
		if err := cfg.Validate("f.yaml"); !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, "stands alone") {
			t.Errorf("%q: err = %v, want %s", c.yaml, err, c.key)
		}
	}
	cfg, err := DecodeStrict("f.yaml", []byte("platforms: [all]\nbase: registry.example.com/base:1\ntargets: [{name: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate("f.yaml"); err != nil {
		t.Fatalf("platforms: [all]: %v", err)
	}
	// On scratch (the default base) "all" means nothing: a config error
	// naming the key, before anything is built.
	for _, c := range []struct{ yaml, key string }{
		{"platforms: [all]\ntargets: [{name: a}]\n", "platforms"},
		{"base: registry.example.com/base:1\ntargets: [{name: a, base: scratch, platforms: [all]}]\n", "targets[0].platforms"},
	} {
		cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		var ce *ConfigError
		if err := cfg.Validate("f.yaml"); !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, "scratch") {
			t.Errorf("%q: err = %v, want a scratch error at %s", c.yaml, err, c.key)
		}
	}
	if testing.Short() {
		return
	}
	dir := t.TempDir()
	writeModule(t, dir)
	jobs, err := plan(t, dir, "platforms: [all]\nbase: registry.example.com/base:1\ntargets:\n  - name: a\n    main: ./cmd/app\n", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !jobs[0].Target.AllPlatforms || len(jobs[0].Target.Platforms) != 0 {
		t.Errorf("planned %+v, want AllPlatforms and no platforms yet", jobs[0].Target.Platforms)
	}
}
