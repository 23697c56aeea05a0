package publish

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 9 item 10: the output directory slipway creates is invisible to
// git, so its output does not make the next build of the same commit
// "modified"; a directory that already exists is left alone.
func TestNewLayoutInvisibleToGit(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	if _, err := NewLayout(filepath.Join(repo, "dist", "oci")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "dist", "slipway-results.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := git("status", "--porcelain"); st != "" {
		t.Fatalf("slipway's output shows in git status:\n%s", st)
	}
	// Reopening an existing layout changes nothing.
	if _, err := NewLayout(filepath.Join(repo, "dist", "oci")); err != nil {
		t.Fatal(err)
	}
	// A directory the user made is theirs: no .gitignore is added to it.
	if err := os.Mkdir(filepath.Join(repo, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MkdirOutput(filepath.Join(repo, "out", "a", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "out", ".gitignore")); !os.IsNotExist(err) {
		t.Fatalf("out/.gitignore written into an existing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "out", "a", ".gitignore")); err != nil {
		t.Fatalf("out/a/.gitignore: %v", err)
	}
}
