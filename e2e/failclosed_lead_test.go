package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// TestSharedCacheRefused: a report cache that others can write is not
// trusted. An edited cached report (no findings) once turned the gate's
// exit 3 into a push; now the run refuses the directory (exit 1) and the
// registry stays empty. Cache directories slipway creates are 0700.
func TestSharedCacheRefused(t *testing.T) {
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
cache_dir: %s
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache_dir: %s
`, reg.Host, cache, filepath.Join(repoRoot(), "testdata", "vulnapp"), fixtureDB(t), filepath.Join(dir, "scancache")))
	r := slipway(t, dir, nil, "build", "--scan", "--push")
	if r.code != 3 {
		t.Fatalf("vulnerable app: exit %d, want 3\n%s", r.code, r)
	}
	for _, d := range []string{cache, filepath.Join(cache, "reports"), filepath.Join(cache, "build"), filepath.Join(dir, "scancache")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s created with mode %04o, want 0700", d, fi.Mode().Perm())
		}
	}
	// Someone else "cleans" the cached report in a shared directory.
	reports, _ := filepath.Glob(filepath.Join(cache, "reports", "*.json"))
	if len(reports) != 1 {
		t.Fatalf("cached reports: %v", reports)
	}
	b := mustRead(t, reports[0])
	i := strings.Index(b, `"findings":[`)
	j := strings.Index(b[i:], "]")
	if i < 0 || j < 0 {
		t.Fatalf("report shape changed: %s", b)
	}
	forged := b[:i] + `"findings":[]` + b[i+j+1:]
	if err := os.WriteFile(reports[0], []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{cache, filepath.Join(cache, "reports")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
		r = slipway(t, dir, nil, "build", "--scan", "--push")
		if r.code != 1 || !strings.Contains(r.stderr, "writable by group or others") || !strings.Contains(r.stderr, d) {
			t.Fatalf("%s shared: want exit 1 naming the directory\n%s", d, r)
		}
		registryHasNothing(t, reg)
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The layer cache too.
	if err := os.Chmod(filepath.Join(dir, "scancache"), 0o757); err != nil {
		t.Fatal(err)
	}
	r = slipway(t, dir, nil, "build", "--scan", "--push")
	if r.code != 1 || !strings.Contains(r.stderr, "scancache") {
		t.Fatalf("shared scan cache: want exit 1 naming it\n%s", r)
	}
	registryHasNothing(t, reg)
}

// TestBuildErrorQuoted: a failed go build is reported once, quoting the
// compiler's error with file and line; -v adds go's whole output.
func TestBuildErrorQuoted(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "go.mod", "module example.com/broken\n\ngo 1.22\n")
	writeFile(t, dir, "main.go", "package main\n\nimport _ \"embed\"\n\n//go:embed ui/dist\nvar ui string\n\nfunc main() { println(ui) }\n")
	writeFile(t, dir, "slipway.yaml", "platforms: [linux/amd64]\ntargets:\n  - name: broken\n    main: .\n")
	want := "main.go:5:12: pattern ui/dist: no matching files found"
	r := slipway(t, dir, nil, "build")
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want exit 1 quoting %q\n%s", want, r)
	}
	if n := strings.Count(r.stderr, "pattern ui/dist"); n != 1 {
		t.Errorf("the error is printed %d times, want once\n%s", n, r.stderr)
	}
	// -v: go's own output, verbatim on its own line, then slipway's line.
	r = slipway(t, dir, nil, "build", "-v")
	if r.code != 1 || !strings.Contains("\n"+r.stderr, "\n"+want+"\n") || !strings.HasSuffix(strings.TrimSpace(r.stderr), want) {
		t.Errorf("-v: want go's output and slipway's line\n%s", r)
	}
}

// TestFlagErrorNamesFlag: a bad value from a flag is blamed on the flag,
// from SLIPWAY_* on the variable, from the file on its line; each once.
func TestFlagErrorNamesFlag(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf("platforms:\n  - linux/amd64\ntargets:\n  - name: hello\n    dir: %s\n    main: ./cmd/hello\n", filepath.Join(repoRoot(), "testdata", "apps", "hello")))
	r := slipway(t, dir, nil, "build", "--platform", "linux/amd64,bogus")
	if r.code != 2 || !strings.Contains(r.stderr, "--platform") || strings.Contains(r.stderr, "slipway.yaml") {
		t.Fatalf("want exit 2 naming --platform, not the file\n%s", r)
	}
	if n := strings.Count(r.stderr, "bogus"); n != 1 {
		t.Errorf("error printed %d times\n%s", n, r.stderr)
	}
	r = slipway(t, dir, []string{"SLIPWAY_PLATFORMS=bogus"}, "build")
	if r.code != 2 || !strings.Contains(r.stderr, "SLIPWAY_PLATFORMS") || strings.Contains(r.stderr, "slipway.yaml") {
		t.Fatalf("want exit 2 naming SLIPWAY_PLATFORMS\n%s", r)
	}
	writeFile(t, dir, "slipway.yaml", strings.Replace(mustRead(t, filepath.Join(dir, "slipway.yaml")), "  - linux/amd64\n", "  - linux/amd64\n  - bogus\n", 1))
	r = slipway(t, dir, nil, "build")
	if r.code != 2 || !strings.Contains(r.stderr, "slipway.yaml:3: platforms[1]") {
		t.Fatalf("want exit 2 naming slipway.yaml:3: platforms[1]\n%s", r)
	}
}

// TestMissingDBFoundFirst: without a vulnerability DB, a scanning run fails
// in the preflight, before any compile (no go build, no binary cache).
func TestMissingDBFoundFirst(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`platforms: [linux/amd64]
cache_dir: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db: {dir: %s}
`, cache, filepath.Join(repoRoot(), "testdata", "apps", "hello"), filepath.Join(dir, "no-db")))
	r := slipway(t, dir, nil, "build", "--scan")
	if r.code != 1 || !strings.Contains(r.stderr, "DB") {
		t.Fatalf("want exit 1 about the DB\n%s", r)
	}
	if strings.Contains(r.stderr, "building") {
		t.Errorf("a build started before the DB check\n%s", r.stderr)
	}
	if bins, _ := filepath.Glob(filepath.Join(cache, "build", "*")); len(bins) != 0 {
		t.Errorf("binaries were built: %v", bins)
	}
}
