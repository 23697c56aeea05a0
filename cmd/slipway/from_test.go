package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ciRecipe reads configs/ci/FILE as YAML.
func ciRecipe(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "ci", file))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return doc
}

// at walks doc along keys (map keys, or list indexes as "0", "1"…).
func at(t *testing.T, doc any, keys ...string) any {
	t.Helper()
	cur := doc
	for i, k := range keys {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[k]
			if !ok {
				t.Fatalf("no %s", strings.Join(keys[:i+1], "."))
			}
			cur = v
		default:
			t.Fatalf("%s is %T, not a map", strings.Join(keys[:i], "."), cur)
		}
	}
	return cur
}

// slipwayLines are the shell lines of a job that run slipway.
func slipwayLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "slipway ") {
			out = append(out, l)
		}
	}
	return out
}

// checkCommand parses a recipe's slipway line against the real command
// tree: the subcommand and every flag must exist, and --from specs must
// be what openShards accepts.
func checkCommand(t *testing.T, line string) {
	t.Helper()
	args := strings.Fields(line)[1:]
	root := newRoot(&globalFlags{})
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if from, err := cmd.Flags().GetStringArray("from"); err == nil {
		for _, f := range from {
			if !strings.HasPrefix(f, "oci-archive:") && !strings.HasPrefix(f, "oci:") {
				t.Fatalf("%q: --from %s", line, f)
			}
		}
	}
}

func TestGitHubActionsRecipe(t *testing.T) {
	doc := ciRecipe(t, "github-actions.yaml")
	include := at(t, doc, "jobs", "build", "strategy", "matrix", "include").([]any)
	var plats []string
	for _, e := range include {
		plats = append(plats, e.(map[string]any)["platform"].(string))
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("matrix platforms %v", plats)
	}
	if at(t, doc, "jobs", "merge", "permissions", "id-token") != "write" {
		t.Fatal("merge job without id-token: write (keyless signing)")
	}
	if at(t, doc, "jobs", "merge", "needs") != "build" {
		t.Fatal("merge job does not wait for the build job")
	}
	if at(t, doc, "jobs", "merge", "env", "SLIPWAY_SIGN_KEYLESS") != "true" {
		t.Fatal("merge job does not sign keylessly")
	}
	steps := func(job string) []string {
		var lines []string
		for _, s := range at(t, doc, "jobs", job, "steps").([]any) {
			if r, ok := s.(map[string]any)["run"].(string); ok {
				lines = append(lines, strings.Split(strings.TrimSpace(r), "\n")...)
			}
		}
		return lines
	}
	build, merge := slipwayLines(steps("build")), slipwayLines(steps("merge"))
	if len(build) != 1 || !strings.Contains(build[0], "--platform ${{ matrix.platform }}") || !strings.Contains(build[0], "--oci-archive") {
		t.Fatalf("build job's slipway lines: %q", build)
	}
	if len(merge) != 2 || !strings.HasPrefix(merge[1], "slipway run --push --from ") {
		t.Fatalf("merge job's slipway lines: %q", merge)
	}
	for _, l := range append(build, merge...) {
		checkCommand(t, l)
	}
}

func TestGitLabRecipe(t *testing.T) {
	doc := ciRecipe(t, "gitlab-ci.yml")
	if at(t, doc, "merge", "id_tokens", "SIGSTORE_ID_TOKEN", "aud") != "sigstore" {
		t.Fatal("merge job without a SIGSTORE_ID_TOKEN for audience sigstore")
	}
	if at(t, doc, "merge", "variables", "SLIPWAY_SIGN_KEYLESS") != "true" {
		t.Fatal("merge job does not sign keylessly")
	}
	matrix := at(t, doc, "build-shard", "parallel", "matrix").([]any)
	if len(matrix) != 2 {
		t.Fatalf("matrix %v", matrix)
	}
	script := func(job string) []string {
		var lines []string
		for _, l := range at(t, doc, job, "script").([]any) {
			lines = append(lines, l.(string))
		}
		return lines
	}
	build, merge := slipwayLines(script("build-shard")), slipwayLines(script("merge"))
	if len(build) != 1 || !strings.Contains(build[0], "--platform $PLATFORM") {
		t.Fatalf("build job's slipway lines: %q", build)
	}
	if len(merge) != 2 || !strings.HasPrefix(merge[1], "slipway run --push --from ") {
		t.Fatalf("merge job's slipway lines: %q", merge)
	}
	for _, l := range append(build, merge...) {
		checkCommand(t, l)
	}
}

func TestOpenShardsUsage(t *testing.T) {
	for _, spec := range []string{"docker://x", "oci:", "oci-archive:", "dir"} {
		_, cleanup, err := openShards([]string{spec})
		cleanup()
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("--from %q: err = %v, want a usage error", spec, err)
		}
	}
	// An archive that is not there is an operational error naming the shard.
	_, cleanup, err := openShards([]string{"oci-archive:" + filepath.Join(t.TempDir(), "none.tar")})
	cleanup()
	var ue *usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "none.tar") {
		t.Fatalf("missing archive: %v", err)
	}
}
