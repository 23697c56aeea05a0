// Package e2e runs the slipway binary, built once, against real components:
// Debian's docker-registry, umoci and runc.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// slipwayBin is the binary every test runs, built once in TestMain.
var slipwayBin string

// TestMain builds slipway once and runs every test in a network namespace
// whose only interface is loopback (testutil.IsolateNetwork): the
// registries, the Sigstore stack and the peer tools (cosign v3 reaches for
// TUF at start) reach each other on 127.0.0.1 and nothing else.
func TestMain(m *testing.M) {
	if testutil.Isolated() {
		slipwayBin = os.Getenv("SLIPWAY_BIN") // built by the parent, below
		os.Exit(testutil.IsolateNetwork(m))
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "slipway-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		slipwayBin = filepath.Join(dir, "slipway")
		if pre := os.Getenv("SLIPWAY_BIN"); pre != "" {
			slipwayBin = pre
		} else {
			_, file, _, _ := runtime.Caller(0)
			// With the Makefile's tags and cgo setting (no stdlib plugin package).
			cmd := exec.Command("go", "build", "-tags", "kustomize_disable_go_plugin_support", "-o", slipwayBin, "./cmd/slipway")
			cmd.Dir = filepath.Dir(filepath.Dir(file))
			cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building slipway:", err)
				return 1
			}
		}
		if err := os.Setenv("SLIPWAY_BIN", slipwayBin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return testutil.IsolateNetwork(m)
	}())
}

// result is one slipway invocation.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// slipway runs the binary in dir with env added to a clean environment.
func slipway(t testing.TB, dir string, env []string, args ...string) result {
	t.Helper()
	r, _ := slipwayRSS(t, dir, env, args...)
	return r
}

// slipwayRSS runs slipway like slipway() and also returns its peak RSS
// (getrusage maxrss of the child, in bytes).
func slipwayRSS(t testing.TB, dir string, env []string, args ...string) (result, int64) {
	t.Helper()
	cmd := exec.Command(slipwayBin, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(t), env...)
	r := runCmd(t, cmd)
	code := r.code
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	// Whatever a failing test prints, slipway's own account is in the log.
	stderr := r.stderr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slipway %s in %s: exit %d, stderr (tail):\n%s", strings.Join(args, " "), dir, code, tail(stderr, 4096))
		}
	})
	return r, rss
}

// runCmd runs cmd, capturing its output; a command that cannot start fails
// the test.
func runCmd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", filepath.Base(cmd.Path), err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// baseEnv is the environment slipway runs with in tests: PATH, HOME and the
// Go caches of the test process (so builds are warm), no SLIPWAY_* from the
// outside, and a Docker config dir with no credentials.
func baseEnv(t testing.TB) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "GOCACHE", "GOMODCACHE", "GOPATH", "GOROOT", "GOPROXY", "GOFLAGS", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := os.LookupEnv("GOCACHE"); !ok {
		out, _ := exec.Command("go", "env", "GOCACHE").Output()
		env = append(env, "GOCACHE="+strings.TrimSpace(string(out)))
	}
	// Each test gets its own slipway caches (XDG_CACHE_HOME) and Docker
	// config; GOCACHE above keeps Go's own build cache warm across tests.
	env = append(env, "DOCKER_CONFIG="+t.TempDir(), "XDG_CACHE_HOME="+testCacheDir(t), "GOPROXY=off")
	return env
}

var cacheDirs sync.Map // testing.TB → string

// testCacheDir is one cache directory per test, shared by all the slipway
// runs of that test (so reruns see their caches) and removed after it.
func testCacheDir(t testing.TB) string {
	if d, ok := cacheDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	cacheDirs.Store(t, d)
	t.Cleanup(func() { cacheDirs.Delete(t) })
	return d
}

// repoRoot is the slipway checkout.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// copyApp copies testdata/apps/NAME to a fresh directory and returns it.
func copyApp(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join(repoRoot(), "testdata", "apps", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeFile writes content to dir/name.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
