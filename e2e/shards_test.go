package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
	"go.yaml.in/yaml/v3"
)

// shardsConfig builds hello and worker for two platforms, pushes them to
// REGISTRY/shards, scans them and signs them with a key.
const shardsConfig = `platforms: [linux/amd64, linux/arm64]
base: scratch
repository: %s/shards
targets:
  - name: hello
    main: ./cmd/hello
    tags: [latest]
  - name: worker
    main: ./cmd/worker
sign:
  key: %s
  attestations: [provenance]
scan:
  db: {dir: %s}
`

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// checkout copies the source tree (its .git included) to a new directory:
// the working copy of one simulated runner.
func checkout(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

// recipeLines reads the shell lines of a CI recipe's job: the run: lines
// of a GitHub Actions job's steps, or a GitLab job's script.
func recipeLines(t *testing.T, file, job string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "configs", "ci", file))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var lines []string
	if jobs, ok := doc["jobs"].(map[string]any); ok { // GitHub Actions
		for _, s := range jobs[job].(map[string]any)["steps"].([]any) {
			if r, ok := s.(map[string]any)["run"].(string); ok {
				lines = append(lines, strings.Split(strings.TrimSpace(r), "\n")...)
			}
		}
		return lines
	}
	for _, l := range doc[job].(map[string]any)["script"].([]any) {
		lines = append(lines, l.(string))
	}
	return lines
}

// recipeSlipway is the recipe's slipway command of job that starts with
// prefix, with vars substituted, as arguments.
func recipeSlipway(t *testing.T, file, job, prefix string, vars map[string]string) []string {
	t.Helper()
	for _, l := range recipeLines(t, file, job) {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for k, v := range vars {
			l = strings.ReplaceAll(l, k, v)
		}
		if strings.ContainsAny(l, "$'\"") {
			t.Fatalf("%s %s: unsubstituted or quoted: %s", file, job, l)
		}
		return strings.Fields(l)[1:]
	}
	t.Fatalf("%s: job %s has no line %q…", file, job, prefix)
	return nil
}

// The merge of two runners' shards gives the digests one machine gives,
// and pushes them scanned, signed and attested; shards that do not fit
// are refused, naming them.
func TestShardsMerge(t *testing.T) {
	reg := testutil.StartRegistry(t)
	src := copyApp(t, "hello")
	key, pub := demoKey(t, t.TempDir(), "pw")
	writeFile(t, src, "slipway.yaml", fmt.Sprintf(shardsConfig, reg.Host, key, fixtureDB(t)))
	git(t, src, "init", "-q")
	git(t, src, "add", "-A")
	git(t, src, "commit", "-qm", "v1")
	env := []string{"COSIGN_PASSWORD=pw"}
	// Each simulated runner: its own working copy and slipway caches (Go's
	// build cache is shared, but for the GitHub Actions runners below).
	runner := func() (string, []string) {
		return checkout(t, src), append(slices.Clone(env), "XDG_CACHE_HOME="+t.TempDir())
	}

	// One machine, every platform.
	oneDir, oneEnv := runner()
	one := filepath.Join(t.TempDir(), "one")
	r := slipway(t, oneDir, oneEnv, "run", "--oci-layout", one)
	if r.code != 0 {
		t.Fatalf("one-machine run: %s", r)
	}
	want := printedDigests(t, r.stdout, "oci:"+one)

	// GitHub Actions: the build job's line on one runner per platform.
	shards := filepath.Join(t.TempDir(), "shards") // the merge job's download
	if err := os.MkdirAll(shards, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ platform, arch string }{{"linux/amd64", "amd64"}, {"linux/arm64", "arm64"}} {
		dir, renv := runner()
		// These two runners also have Go build caches of their own, as
		// CI runners do: the digests cannot come from a shared cache.
		renv = append(renv, "GOCACHE="+t.TempDir())
		temp := t.TempDir()
		args := recipeSlipway(t, "github-actions.yaml", "build", "slipway build", map[string]string{
			"${{ matrix.platform }}": m.platform, "${{ matrix.arch }}": m.arch, "${{ runner.temp }}": temp,
		})
		if r := slipway(t, dir, renv, args...); r.code != 0 {
			t.Fatalf("runner %s: %s", m.arch, r)
		}
		file := "shard-" + m.arch + ".tar"
		if err := os.Rename(filepath.Join(temp, "shards", file), filepath.Join(shards, file)); err != nil {
			t.Fatal(err)
		}
	}
	mergeDir, mergeEnv := runner()
	merge := func(from ...string) result {
		args := []string{"run", "--push"}
		for _, f := range from {
			args = append(args, "--from", "oci-archive:"+filepath.Join(shards, f))
		}
		return slipway(t, mergeDir, mergeEnv, args...)
	}

	// Refused before anything is written: exit 1, naming the shard.
	both := filepath.Join(shards, "both.tar")
	if r := slipway(t, mergeDir, mergeEnv, "build", "--oci-archive", both); r.code != 0 {
		t.Fatalf("two-platform shard: %s", r)
	}
	modDir, modEnv := runner()
	writeFile(t, modDir, "cmd/worker/extra.go", "package main\n\nvar extra = 1\n")
	if r := slipway(t, modDir, modEnv, "build", "--platform", "linux/arm64", "--oci-archive", filepath.Join(shards, "modified.tar")); r.code != 0 {
		t.Fatalf("modified shard: %s", r)
	}
	git(t, modDir, "add", "-A")
	git(t, modDir, "commit", "-qm", "v2")
	if r := slipway(t, modDir, modEnv, "build", "--platform", "linux/arm64", "--oci-archive", filepath.Join(shards, "v2.tar")); r.code != 0 {
		t.Fatalf("v2 shard: %s", r)
	}
	for _, tc := range []struct {
		name string
		from []string
		want []string
	}{
		{"duplicate platform", []string{"shard-amd64.tar", "both.tar"}, []string{"linux/amd64", "shard-amd64.tar", "both.tar", "two shards"}},
		{"missing platform", []string{"shard-amd64.tar"}, []string{"no shard has target hello for platform linux/arm64"}},
		{"modified source", []string{"shard-amd64.tar", "modified.tar"}, []string{"shard oci-archive:" + filepath.Join(shards, "modified.tar"), "modified checkout"}},
		{"another commit", []string{"shard-amd64.tar", "v2.tar"}, []string{"shard oci-archive:" + filepath.Join(shards, "v2.tar"), "built from commit"}},
	} {
		r := merge(tc.from...)
		if r.code != 1 {
			t.Errorf("%s: want exit 1\n%s", tc.name, r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr does not say %q\n%s", tc.name, w, r)
			}
		}
	}
	if r := slipway(t, mergeDir, mergeEnv, "run", "--push", "--from", "oci-archive:"+filepath.Join(shards, "shard-amd64.tar"), "--platform", "linux/amd64"); r.code != 2 {
		t.Errorf("--from with --platform: want exit 2\n%s", r)
	}
	for _, target := range []string{"hello", "worker"} {
		repo, _ := name.NewRepository(reg.Host + "/shards/" + target)
		if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
			t.Fatalf("%s: tags %v after refused merges", repo, tags)
		}
	}

	// The merge job's line: scanned, signed, pushed; the one-machine digests.
	args := recipeSlipway(t, "github-actions.yaml", "merge", "slipway run", map[string]string{"${{ runner.temp }}": filepath.Dir(shards)})
	r = slipway(t, mergeDir, mergeEnv, args...)
	if r.code != 0 {
		t.Fatalf("merge: %s", r)
	}
	var got []string
	for _, target := range []string{"hello", "worker"} {
		ref := pushedRef(t, r.stdout, target)
		got = append(got, ref.DigestStr())
		if v := slipway(t, mergeDir, nil, "verify", ref.String(), "--key", pub); v.code != 0 {
			t.Fatalf("verify %s: %s", ref, v)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("merged %v, one machine %v", got, want)
	}
	if !strings.Contains(r.stderr, "hello") || !strings.Contains(r.stderr, "pass") {
		t.Fatalf("merge summary shows no passed gate:\n%s", r)
	}

	// GitLab: the build-shard job's line per matrix entry (shards in the
	// checkout, as artifacts are), the merge job's exclude and merge lines.
	glMerge, glEnv := runner()
	for _, m := range []struct{ platform, arch string }{{"linux/amd64", "amd64"}, {"linux/arm64", "arm64"}} {
		dir, renv := runner()
		args := recipeSlipway(t, "gitlab-ci.yml", "build-shard", "slipway build", map[string]string{"$PLATFORM": m.platform, "$ARCH": m.arch})
		if r := slipway(t, dir, renv, args...); r.code != 0 {
			t.Fatalf("gitlab runner %s: %s", m.arch, r)
		}
		file := filepath.Join("shards", "shard-"+m.arch+".tar")
		if err := os.MkdirAll(filepath.Join(glMerge, "shards"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, file), filepath.Join(glMerge, file)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range recipeLines(t, "gitlab-ci.yml", "merge") {
		if strings.Contains(l, ".git/info/exclude") {
			cmd := exec.Command("sh", "-c", l)
			cmd.Dir = glMerge
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", l, err, out)
			}
		}
	}
	args = recipeSlipway(t, "gitlab-ci.yml", "merge", "slipway run", nil)
	r = slipway(t, glMerge, glEnv, args...)
	if r.code != 0 {
		t.Fatalf("gitlab merge: %s", r)
	}
	got = got[:0]
	for _, target := range []string{"hello", "worker"} {
		got = append(got, pushedRef(t, r.stdout, target).DigestStr())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("gitlab merge %v, one machine %v", got, want)
	}
}
