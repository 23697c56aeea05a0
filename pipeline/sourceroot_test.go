package pipeline_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/slipway-build/slipway/pipeline"
)

func TestSourceRoot(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(tmp, "repo")
	sub := filepath.Join(repo, "deploy", "prod")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(tmp, "plain")
	os.MkdirAll(plain, 0o755)
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	ctx := context.Background()
	if got := pipeline.SourceRoot(ctx, sub); got != repo {
		t.Errorf("SourceRoot in a checkout = %s, want its top level %s", got, repo)
	}
	if got := pipeline.SourceRoot(ctx, plain); got != plain {
		t.Errorf("SourceRoot outside git = %s, want the directory itself", got)
	}
	for _, tc := range []struct{ base, p, want string }{
		{sub, filepath.Join(repo, "svc", "api"), "svc/api"},
		{sub, "../../conf", "conf"},
		{sub, ".", "deploy/prod"},
		{repo, repo, "."},
		{repo, filepath.Join(tmp, "shared"), "../shared"},
		{repo, "", ""},
	} {
		if got := pipeline.RelativeTo(repo, tc.base, tc.p); got != tc.want {
			t.Errorf("RelativeTo(%s, %s, %s) = %q, want %q", repo, tc.base, tc.p, got, tc.want)
		}
	}
}
