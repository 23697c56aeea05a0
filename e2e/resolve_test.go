package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// TestResolveCannotSurprise (issue 14 item 11): resolve rewrites
// placeholders, bare repositories and tags slipway pushed, to the pushed
// digests; another tag or digest of a target's repository is left alone
// with a warning naming file:line; a local build in between changes
// nothing of what resolve reads (dist/slipway-pushed.json); push oci:DIR TARGET records what it
// pushed, keeping the other targets' entries.
func TestResolveCannotSurprise(t *testing.T) {
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	writeFile(t, app, "slipway.yaml", fmt.Sprintf(helloConfig, reg.Host))
	env := []string{"APP_VERSION=1"}
	r := slipway(t, app, env, "build", "--push")
	if r.code != 0 {
		t.Fatalf("build --push: %s", r)
	}
	hello, worker := pushedRef(t, r.stdout, "hello"), pushedRef(t, r.stdout, "worker")
	pushedRecord, err := os.ReadFile(filepath.Join(app, "dist", "slipway-pushed.json"))
	if err != nil {
		t.Fatal(err)
	}

	// A local build of changed source: the last run's results say so, the
	// pushed record is untouched.
	r = slipway(t, app, []string{"APP_VERSION=2"}, "build")
	if r.code != 0 {
		t.Fatalf("local build: %s", r)
	}
	if strings.Contains(r.stdout, hello.DigestStr()) {
		t.Fatalf("the local build gave the pushed digest: the test would prove nothing\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(app, "dist", "slipway-pushed.json")); string(b) != string(pushedRecord) {
		t.Fatalf("a local build changed the pushed record:\n%s", b)
	}
	if b, err := os.ReadFile(filepath.Join(app, "dist", "slipway-results.json")); err != nil || !strings.Contains(string(b), `"oci:`) {
		t.Fatalf("last run's results: %v\n%s", err, b)
	}

	repo := reg.Host + "/team/"
	other := "sha256:" + strings.Repeat("0", 64)
	manifest := fmt.Sprintf(`# deploy
spec:
  containers:
  - image: slipway://hello
  - image: %[1]shello
  - image: %[1]shello:v1
  - image: %[1]sworker:latest
  - image: %[1]shello:v9.9.9
  - image: %[1]sworker@%[2]s
  - image: %[1]sworker@%[3]s
`, repo, other, worker.DigestStr())
	deploy := writeFile(t, app, "k8s/deploy.yaml", manifest)
	r = slipway(t, app, nil, "resolve", "-f", "k8s")
	if r.code != 0 {
		t.Fatalf("resolve: %s", r)
	}
	got, _ := os.ReadFile(deploy)
	want := fmt.Sprintf(`# deploy
spec:
  containers:
  - image: %[4]s
  - image: %[1]shello@%[5]s
  - image: %[1]shello@%[5]s
  - image: %[1]sworker@%[3]s
  - image: %[1]shello:v9.9.9
  - image: %[1]sworker@%[2]s
  - image: %[1]sworker@%[3]s
`, repo, other, worker.DigestStr(), hello.String(), hello.DigestStr())
	if string(got) != want {
		t.Fatalf("resolved:\n%s\nwant:\n%s", got, want)
	}
	for _, w := range []string{
		filepath.Join("k8s", "deploy.yaml") + ":8: image \"" + repo + "hello:v9.9.9\"",
		filepath.Join("k8s", "deploy.yaml") + ":9: image \"" + repo + "worker@" + other + "\"",
	} {
		if !strings.Contains(r.stderr, "warning: "+w) {
			t.Errorf("stderr lacks the warning %q:\n%s", w, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "warning: "); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, r.stderr)
	}

	// push oci:DIR hello records hello's new digest; worker keeps its entry.
	r = slipway(t, app, []string{"APP_VERSION=2"}, "build", "--oci-layout", "out")
	if r.code != 0 {
		t.Fatalf("build --oci-layout: %s", r)
	}
	p := slipway(t, app, nil, "push", "oci:out", "hello")
	if p.code != 0 {
		t.Fatalf("push oci:out hello: %s", p)
	}
	newHello := pushedRef(t, p.stdout, "hello")
	if newHello.DigestStr() == hello.DigestStr() {
		t.Fatal("the pushed layout has the old digest")
	}
	in := "a:\n  image: slipway://hello\nb:\n  image: slipway://worker\n"
	out := resolveStdin(t, app, in)
	if wantOut := "a:\n  image: " + newHello.String() + "\nb:\n  image: " + worker.String() + "\n"; out != wantOut {
		t.Fatalf("after push oci:out hello, resolve gives:\n%s\nwant:\n%s", out, wantOut)
	}
}

// resolveStdin runs slipway resolve -f - in dir with in on stdin.
func resolveStdin(t *testing.T, dir, in string) string {
	t.Helper()
	cmd := exec.Command(slipwayBin, "resolve", "-f", "-")
	cmd.Dir, cmd.Env = dir, baseEnv(t)
	cmd.Stdin = strings.NewReader(in)
	r := runCmd(t, cmd)
	if r.code != 0 {
		t.Fatalf("resolve -f -: %s", r)
	}
	return r.stdout
}
