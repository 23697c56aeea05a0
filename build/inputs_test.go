package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cachedBuild builds t with g and returns whether the binary came from
// the cache and the platform image's digest.
func cachedBuild(t *testing.T, g *GoBuilder, tg Target) (bool, v1.Hash) {
	t.Helper()
	res, err := g.Build(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	return res.Images[0].Cached, res.Images[0].Digest
}

func localTarget(t *testing.T, dir string) Target {
	t.Helper()
	p, _ := ParsePlatform("linux/amd64")
	base, err := ResolveBase(context.Background(), Scratch)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Name: "app", Dir: dir, Main: ".", Platforms: []v1.Platform{p}, Base: base, Created: time.Unix(1700000000, 0)}
}

// firstPlatformEnv is tg's first platform and the go build environment
// for it, as CheckMain makes them.
func firstPlatformEnv(t *testing.T, tg Target) (v1.Platform, []string) {
	t.Helper()
	p := tg.Platforms[0]
	penv, err := platformEnv(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, buildEnv(os.Environ(), penv, tg.Env, tg.SecretEnv)
}

// Issue 9 item 11: the binary cache key covers every file the build reads,
// not only the regular files under the module directory: a file reached
// through a symlink, and a go.work in a parent directory with the modules
// it uses. An unchanged tree stays a hit.
func TestBinaryCacheKeyCoversInputs(t *testing.T) {
	g, err := New(WithBinaryCache(t.TempDir()), WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("symlink", func(t *testing.T) {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{
			"app/go.mod":       "module example.com/app\n\ngo 1.26\n",
			"app/main.go":      "package main\n\nfunc main() { println(msg) }\n",
			"shared/extra.go":  "package main\n\nconst msg = \"one\"\n",
			"shared/other.txt": "",
		})
		if err := os.Symlink(filepath.Join(root, "shared", "extra.go"), filepath.Join(root, "app", "extra.go")); err != nil {
			t.Fatal(err)
		}
		tg := localTarget(t, filepath.Join(root, "app"))
		cached, d1 := cachedBuild(t, g, tg)
		if cached {
			t.Fatal("first build was a cache hit")
		}
		if cached, d := cachedBuild(t, g, tg); !cached || d != d1 {
			t.Fatalf("unchanged tree: cached=%v, digest %s → %s", cached, d1, d)
		}
		writeFiles(t, root, map[string]string{"shared/extra.go": "package main\n\nconst msg = \"two\"\n"})
		cached, d2 := cachedBuild(t, g, tg)
		if cached || d2 == d1 {
			t.Fatalf("symlinked extra.go changed: cached=%v, digest %s → %s (a stale binary)", cached, d1, d2)
		}
		// A file the build does not read does not invalidate it, nor does
		// a variable the go command does not read (a CI run id, TMPDIR).
		writeFiles(t, root, map[string]string{"app/README.md": "hello"})
		t.Setenv("CI_RUN_ID", "2")
		if cached, d := cachedBuild(t, g, tg); !cached || d != d2 {
			t.Fatalf("README added, CI_RUN_ID set: cached=%v", cached)
		}
		// One it reads does.
		t.Setenv("GOFLAGS", "-tags=other")
		if cached, _ := cachedBuild(t, g, tg); cached {
			t.Fatal("GOFLAGS changed: cache hit")
		}
	})
	t.Run("go.work", func(t *testing.T) {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{
			"go.work":       "go 1.26\n\nuse (\n\t./app\n\t./lib\n)\n",
			"app/go.mod":    "module example.com/app\n\ngo 1.26\n",
			"app/main.go":   "package main\n\nimport \"example.com/lib\"\n\nfunc main() { println(lib.Msg) }\n",
			"lib/go.mod":    "module example.com/lib\n\ngo 1.26\n",
			"lib/lib.go":    "package lib\n\nconst Msg = \"one\"\n",
			"lib2/go.mod":   "module example.com/lib\n\ngo 1.26\n",
			"lib2/lib.go":   "package lib\n\nconst Msg = \"two\"\n",
			"lib3/go.mod":   "module example.com/lib\n\ngo 1.26\n",
			"lib3/lib.go":   "package lib\n\nconst Msg = \"three\"\n",
			"lib3/data.go":  "package lib\n\nimport _ \"embed\"\n\n//go:embed data.txt\nvar Data string\n",
			"lib3/data.txt": "a",
		})
		tg := localTarget(t, filepath.Join(root, "app"))
		_, d1 := cachedBuild(t, g, tg)
		if cached, d := cachedBuild(t, g, tg); !cached || d != d1 {
			t.Fatalf("unchanged workspace: cached=%v", cached)
		}
		writeFiles(t, root, map[string]string{"go.work": "go 1.26\n\nuse (\n\t./app\n\t./lib2\n)\n"})
		cached, d2 := cachedBuild(t, g, tg)
		if cached || d2 == d1 {
			t.Fatalf("go.work changed: cached=%v, digest %s → %s (a stale binary)", cached, d1, d2)
		}
		writeFiles(t, root, map[string]string{"lib2/lib.go": "package lib\n\nconst Msg = \"two!\"\n"})
		cached, d3 := cachedBuild(t, g, tg)
		if cached || d3 == d2 {
			t.Fatalf("workspace module changed: cached=%v", cached)
		}
		// An embedded file of a module outside the main module's directory.
		writeFiles(t, root, map[string]string{"go.work": "go 1.26\n\nuse (\n\t./app\n\t./lib3\n)\n",
			"app/main.go": "package main\n\nimport \"example.com/lib\"\n\nfunc main() { println(lib.Msg, lib.Data) }\n"})
		_, d4 := cachedBuild(t, g, tg)
		writeFiles(t, root, map[string]string{"lib3/data.txt": "b"})
		if cached, d := cachedBuild(t, g, tg); cached || d == d4 {
			t.Fatalf("embedded file changed: cached=%v", cached)
		}
	})
}

// Issue 9 item 9: the go build child environment holds none of slipway's
// secrets (checked on what the go command is actually given).
func TestGoBuildEnvHasNoSecrets(t *testing.T) {
	dump := filepath.Join(t.TempDir(), "env")
	fakeGo := filepath.Join(t.TempDir(), "go")
	script := "#!/bin/sh\nenv > \"$ENV_DUMP\"\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then shift; echo bin > \"$1\"; fi; shift; done\n"
	if err := os.WriteFile(fakeGo, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ENV_DUMP", dump)
	secrets := map[string]string{
		"COSIGN_PASSWORD": "s1", "MY_SIGNING_KEY": "s2", "SIGSTORE_ID_TOKEN": "s3",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "s4", "SLIPWAY_REGISTRY_PASSWORD": "s5",
	}
	for k, v := range secrets {
		t.Setenv(k, "sentinel-"+v)
	}
	t.Setenv("KEEP_ME", "kept")
	g, err := New(WithGo(fakeGo), WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := localTarget(t, t.TempDir())
	tg.SecretEnv = []string{"MY_SIGNING_KEY"}
	if _, err := g.Build(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(dump)
	env = append([]byte("\n"), env...)
	if err != nil {
		t.Fatal(err)
	}
	// Report names only: the machine's environment is not test output.
	var leaked []string
	for _, l := range strings.Split(string(env), "\n") {
		if k, v, _ := strings.Cut(l, "="); strings.HasPrefix(v, "sentinel-") {
			leaked = append(leaked, k)
		}
	}
	if len(leaked) > 0 {
		t.Fatalf("go build environment holds secrets: %v", leaked)
	}
	if !bytes.Contains(env, []byte("\nKEEP_ME=kept\n")) || !bytes.Contains(env, []byte("\nCGO_ENABLED=0\n")) {
		t.Fatal("go build environment lost KEEP_ME or CGO_ENABLED=0")
	}
}

// Issue 9 item 8: CheckMain tells a library from a package main.
func TestCheckMain(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.26\n",
		"cmd/app/main.go": "package main\n\nfunc main() {}\n",
		"lib/lib.go":      "package lib\n",
	})
	tg := localTarget(t, dir)
	tg.Main = "./cmd/app"
	if err := CheckMain(context.Background(), &tg); err != nil {
		t.Fatal(err)
	}
	// Its go list is the cache key's: the key with it equals the key
	// computed afresh, and a listing made for other flags is not used.
	c, err := newBinaryCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := findGo()
	if err != nil {
		t.Fatal(err)
	}
	p, env := firstPlatformEnv(t, tg)
	if tg.listed == nil || tg.listed.key != listingKey(gobin, tg, env) {
		t.Fatal("CheckMain left no listing for the first platform's key")
	}
	withListing, err := c.key(context.Background(), gobin, tg, p, env)
	if err != nil {
		t.Fatal(err)
	}
	fresh := tg
	fresh.listed = nil
	afresh, err := c.key(context.Background(), gobin, fresh, p, env)
	if err != nil || afresh != withListing {
		t.Fatalf("key with CheckMain's listing %s, afresh %s (%v)", withListing, afresh, err)
	}
	stale := tg
	stale.listed = &listing{key: "made for another platform", out: []byte(`{"ImportPath":"example.com/other","Name":"main"}`)}
	if k, err := c.key(context.Background(), gobin, stale, p, env); err != nil || k != withListing {
		t.Fatalf("a listing made for another environment was used: %s (%v)", k, err)
	}
	tg.Main = "./lib"
	err = CheckMain(context.Background(), &tg)
	if nm, ok := err.(*NotMainError); !ok || !strings.Contains(nm.Error(), "not a package main") {
		t.Fatalf("library: err = %v", err)
	}
	// go list failures are left to go build, which reports them.
	tg.Main = "./missing"
	if err := CheckMain(context.Background(), &tg); err != nil {
		t.Fatalf("missing package: err = %v", err)
	}
}

// Issue 9 item 10: the binary's VCS stamp must agree with the state the
// caller recorded for templates and provenance; a checkout that changes
// during the build fails it instead of producing a binary that disagrees.
func TestBuildRefusesVCSDisagreement(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":  "module example.com/app\n\ngo 1.26\n",
		"main.go": "package main\n\nfunc main() {}\n",
	})
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "one")
	g, err := New(WithCACertificates(CANone))
	if err != nil {
		t.Fatal(err)
	}
	tg := localTarget(t, dir)
	tg.Revision = git("rev-parse", "HEAD")
	if _, err := g.Build(context.Background(), tg); err != nil {
		t.Fatalf("clean checkout, recorded clean: %v", err)
	}
	// Recorded clean, but a file appeared before go build ran (as a report
	// written into the checkout by another target would).
	writeFiles(t, dir, map[string]string{"report.sarif": "{}"})
	_, err = g.Build(context.Background(), tg)
	if err == nil || !strings.Contains(err.Error(), "checkout changed during the build") {
		t.Fatalf("err = %v, want the disagreement refused", err)
	}
	tg.Dirty = true
	if _, err := g.Build(context.Background(), tg); err != nil {
		t.Fatalf("dirty checkout, recorded dirty: %v", err)
	}
}

// Issue 13: CheckMain, run beside the build (StartCheckMain), and the
// first platform's binary cache key share one go list, whichever of them
// asks first; the other waits for its output.
func TestCheckMainBesideKeySharesGoList(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.26\n",
		"cmd/app/main.go": "package main\n\nfunc main() {}\n",
	})
	realGo, err := findGo()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(realGo, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	// A go command that notes each go list, for the count.
	fake := t.TempDir()
	calls := filepath.Join(t.TempDir(), "lists")
	script := "#!/bin/sh\n[ \"$1\" = list ] && echo list >> " + calls + "\nGOROOT=" + strings.TrimSpace(string(out)) + " exec " + realGo + " \"$@\"\n"
	if err := os.MkdirAll(filepath.Join(fake, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "bin", "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOROOT", fake)
	gobin, err := findGo()
	if err != nil || gobin != filepath.Join(fake, "bin", "go") {
		t.Fatalf("go command %s (%v), want the counting one", gobin, err)
	}
	c, err := newBinaryCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, keyFirst := range []bool{false, true} {
		os.Remove(calls)
		tg := localTarget(t, dir)
		tg.Main = "./cmd/app"
		check, err := StartCheckMain(&tg)
		if err != nil {
			t.Fatal(err)
		}
		p, env := firstPlatformEnv(t, tg)
		keyDone := make(chan error, 1)
		build := tg // the build's copy, made before the check ran
		go func() {
			_, err := c.key(context.Background(), gobin, build, p, env)
			keyDone <- err
		}()
		if keyFirst {
			if err := <-keyDone; err != nil {
				t.Fatal(err)
			}
		}
		if err := check(context.Background()); err != nil {
			t.Fatalf("check: %v", err)
		}
		if !keyFirst {
			if err := <-keyDone; err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(calls)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "list"); n != 1 {
			t.Fatalf("key first %v: %d go lists, want 1 shared", keyFirst, n)
		}
	}
}
