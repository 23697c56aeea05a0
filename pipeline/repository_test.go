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
