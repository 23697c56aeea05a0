package conformance

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/slipway-build/slipway/internal/testutil"
)

// suiteModule is the conformance suite's main package, pinned in go.mod
// through internal/tools.
const suiteModule = "github.com/opencontainers/distribution-spec/conformance"

// profile is one configuration of the suite and the result expected of
// docker-registry (distribution 2.8.2) for every API and data category.
// README.md explains each FAIL; keep the two in step.
type profile struct {
	name string
	env  []string
	apis map[string]string
	data map[string]string
}

// full is the suite's default, OCI distribution-spec 1.1.
var full = profile{
	name: "oci-1.1",
	apis: map[string]string{
		"Blob anonymous mount": "FAIL", "Blob chunked": "FAIL", "Blob delete": "Pass",
		"Blob delete atomic": "Pass", "Blob get": "FAIL", "Blob get range": "FAIL",
		"Blob head": "FAIL", "Blob mount": "FAIL", "Blob post only": "Skip",
		"Blob post put": "FAIL", "Blob push": "Pass", "Blob streaming": "FAIL",
		"Blob upload cancel": "Disabled", "Manifest delete": "Pass", "Manifest delete atomic": "Pass",
		"Manifest get by digest": "FAIL", "Manifest get by tag": "FAIL", "Manifest head by digest": "FAIL",
		"Manifest head by tag": "FAIL", "Manifest put by digest": "FAIL", "Manifest put by tag": "FAIL",
		"Manifest put with subject": "FAIL", "Manifest put with tag params": "Disabled", "Ping": "Pass",
		"Referrers": "FAIL", "Tag delete": "Skip", "Tag delete atomic": "Skip", "Tag listing": "FAIL",
	},
	data: map[string]string{
		"Artifact": "Pass", "Artifact Index": "Pass", "Artifact without Layers": "Pass",
		"Artifacts with Subject": "FAIL", "Bad Digest Image": "Pass", "Blobs sha256": "FAIL",
		"Blobs sha512": "FAIL", "Custom Fields": "Pass", "Data Field": "Pass",
		"Digest Algorithm sha512": "FAIL", "Empty Index": "Pass", "Image": "Pass",
		"Image Uncompressed": "Pass", "Image with Large Manifest": "Pass", "Index": "Pass",
		"Index with Subject": "FAIL", "Invalid Manifest Digest": "FAIL", "Missing Subject": "FAIL",
		"Nested Index": "Pass", "No Layers": "Pass", "Non-distributable Layers": "FAIL",
		"Sparse Manifests": "Disabled", "Tag Param": "Disabled", "Tag Param sha512": "Disabled",
	},
}

// core leaves out what distribution 2.8 does not implement (referrers,
// subject, sha512 content, non-distributable layers), so the remaining
// failures are the fixture's deviations on the APIs slipway uses.
var core = profile{
	name: "core",
	env: []string{"OCI_API_REFERRER=false", "OCI_DATA_SHA512=false", "OCI_DATA_SUBJECT=false",
		"OCI_DATA_SUBJECT_MISSING=false", "OCI_DATA_SUBJECT_LIST=false", "OCI_DATA_NONDISTRIBUTABLE=false"},
	apis: map[string]string{
		"Blob anonymous mount": "Skip", "Blob chunked": "FAIL", "Blob delete": "Pass",
		"Blob delete atomic": "Pass", "Blob get": "Pass", "Blob get range": "FAIL",
		"Blob head": "Pass", "Blob mount": "Pass", "Blob post only": "Skip",
		"Blob post put": "Pass", "Blob push": "Pass", "Blob streaming": "Pass",
		"Blob upload cancel": "Disabled", "Manifest delete": "Pass", "Manifest delete atomic": "Pass",
		"Manifest get by digest": "FAIL", "Manifest get by tag": "Pass", "Manifest head by digest": "Pass",
		"Manifest head by tag": "Pass", "Manifest put by digest": "FAIL", "Manifest put by tag": "Pass",
		"Manifest put with tag params": "Disabled", "Ping": "Pass",
		"Referrers": "Disabled", "Tag delete": "Skip", "Tag delete atomic": "Skip", "Tag listing": "Pass",
	},
	data: map[string]string{
		"Artifact": "Pass", "Artifact Index": "Pass", "Artifact without Layers": "Pass",
		"Artifacts with Subject": "Disabled", "Bad Digest Image": "Pass", "Blobs sha256": "FAIL",
		"Blobs sha512": "Disabled", "Custom Fields": "Pass", "Data Field": "Pass",
		"Digest Algorithm sha512": "Disabled", "Empty Index": "Pass", "Image": "Pass",
		"Image Uncompressed": "Pass", "Image with Large Manifest": "Pass", "Index": "Pass",
		"Index with Subject": "Disabled", "Invalid Manifest Digest": "FAIL", "Missing Subject": "Disabled",
		"Nested Index": "Pass", "No Layers": "Pass", "Non-distributable Layers": "Disabled",
		"Sparse Manifests": "Disabled", "Tag Param": "Disabled", "Tag Param sha512": "Disabled",
	},
}

// TestDistributionConformance runs the suite once per profile, each
// against a fresh docker-registry on 127.0.0.1, and compares every
// category with the documented result. A difference means the fixture
// changed (e.g. a new Debian docker-registry): update README.md and the
// tables above together.
func TestDistributionConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry")
	}
	testutil.NeedRegistry(t)
	bin := buildSuite(t)
	for _, p := range []profile{full, core} {
		t.Run(p.name, func(t *testing.T) {
			reg := testutil.StartRegistry(t)
			dir := t.TempDir()
			cmd := exec.Command(bin)
			cmd.Dir = dir
			cmd.Env = append([]string{
				"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
				"OCI_REGISTRY=" + reg.Host, "OCI_TLS=disabled",
				"OCI_RESULTS_DIR=" + filepath.Join(dir, "results"), "OCI_LOG=error",
			}, p.env...)
			out, err := cmd.CombinedOutput()
			// The suite exits 1 when any category fails, which the
			// fixture is expected to do; the results file is the verdict.
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				t.Fatalf("running the suite: %v", err)
			}
			b, rerr := os.ReadFile(filepath.Join(dir, "results", "results.yaml"))
			if rerr != nil {
				t.Fatalf("no results (%v): %v\n%s", err, rerr, out)
			}
			var res struct {
				APIs map[string]string `yaml:"apis"`
				Data map[string]string `yaml:"data"`
			}
			if err := yaml.Unmarshal(b, &res); err != nil {
				t.Fatalf("results.yaml: %v", err)
			}
			t.Logf("summary:\n%s", summary(out))
			diff := compare("api", p.apis, res.APIs) + compare("data", p.data, res.Data)
			if diff != "" {
				t.Errorf("docker-registry no longer behaves as internal/conformance/README.md documents (%s):\n%s\nsuite output (failures):\n%s",
					p.name, diff, failures(out))
			}
		})
	}
}

// buildSuite compiles the suite from the module cache, offline. It skips
// the test when the module cannot be built (not downloaded: run
// `go mod download`).
func buildSuite(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oci-conformance")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, suiteModule)
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOEXPERIMENT=jsonv2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build the conformance suite %s (run `go mod download` with network access): %v\n%s", suiteModule, err, out)
	}
	return bin
}

// compare lists every category whose status differs from the expected one,
// including categories that appeared or disappeared.
func compare(kind string, want, got map[string]string) string {
	var b strings.Builder
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  %s %q: missing from results (documented %s)\n", kind, k, w)
		case !wok:
			fmt.Fprintf(&b, "  %s %q: new category, result %s\n", kind, k, g)
		case w != g:
			fmt.Fprintf(&b, "  %s %q: %s, documented %s\n", kind, k, g, w)
		}
	}
	return b.String()
}

// summary is the suite's closing summary (from "OCI Conformance Result").
func summary(out []byte) string {
	s := string(out)
	if i := strings.LastIndex(s, "OCI Conformance Result"); i >= 0 {
		return s[i:]
	}
	return s
}

// failures keeps the failing lines of the suite's report and their errors.
func failures(out []byte) string {
	var b strings.Builder
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.HasSuffix(l, ": FAIL") {
			b.WriteString(l + "\n")
			for j := i + 1; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "- "); j++ {
				b.WriteString(lines[j] + "\n")
			}
		}
	}
	return b.String()
}
