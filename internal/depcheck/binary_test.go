package depcheck

import (
	"bufio"
	"cmp"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	trivyPkg = "github.com/aquasecurity/trivy/pkg/"
	binary   = module + "/cmd/slipway"
)

// unlinked is what the slipway binary, as `make build` builds it, must not
// link: packages that cost size and start-up memory on every command and
// that slipway does not use. One row: no package under forbidden may be
// reachable from cmd/slipway except through gateway (when set), whose
// imports are not followed.
var unlinked = []struct {
	forbidden, gateway, why string
}{
	{"plugin", "", "with cgo on, the linker then keeps every method of reachable types and exports every symbol " +
		"(+37 MB); Trivy reaches it through Helm and kustomize: build with -tags kustomize_disable_go_plugin_support"},
	{trivyPkg + "fanal/artifact/image", "", "slipway inspects its own v1.Image (scan/trivy/inspect.go); " +
		"Trivy's image artifact links its image sources and OCI downloader"},
	{trivyPkg + "fanal/image/daemon", "", "Trivy's Docker/containerd/podman image sources (docker CLI, containerd, grpc)"},
	{trivyPkg + "remote", "", "Trivy's registry client with the ECR, Azure and Google credential SDKs"},
	{trivyPkg + "oci", "", "Trivy's OCI artifact downloader (go-getter, AWS S3, GCS)"},
	// Stock Trivy v0.74.0 links go-getter through this one edge:
	// fanal/analyzer → iac/detection → iac/scanners/terraformplan/snapshot
	// → terraform/parser → resolvers (Terraform module sources). Any other
	// path to it is new weight.
	{"github.com/hashicorp/go-getter", trivyPkg + "iac/scanners/terraform/parser/resolvers",
		"go-getter links the AWS S3 and GCS SDKs"},
	// ggcr's authn reads ~/.docker/config.json with the docker CLI's
	// config packages; nothing else may bring more of the CLI.
	{"github.com/docker/cli", "github.com/google/go-containerregistry/pkg/authn", "the docker CLI beyond its config file"},
}

// makefileBuild returns the build tags and the CGO_ENABLED setting of the
// Makefile's recipe that builds ./cmd/slipway.
func makefileBuild(t *testing.T) (tags, cgo string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inBuild := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "build:"):
			inBuild = true
		case !strings.HasPrefix(line, "\t"):
			inBuild = false
		case inBuild && strings.Contains(line, "./cmd/slipway"):
			if m := regexp.MustCompile(`-tags[ =](\S+)`).FindStringSubmatch(line); m != nil {
				tags = m[1]
			}
			if m := regexp.MustCompile(`CGO_ENABLED=(\S+)`).FindStringSubmatch(line); m != nil {
				cgo = m[1]
			}
			return tags, cgo
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the Makefile has no build: recipe line building ./cmd/slipway")
	return "", ""
}

// graph is cmd/slipway's import graph as `make build` builds it.
func graph(t *testing.T) map[string][]string {
	t.Helper()
	tags, cgo := makefileBuild(t)
	args := []string{"list", "-deps", "-json=ImportPath,Imports"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "./cmd/slipway")...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	if cgo != "" {
		cmd.Env = append(cmd.Env, "CGO_ENABLED="+cgo)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		g[p.ImportPath] = p.Imports
	}
	return g
}

// reach returns, for every package reachable from root without entering
// gateway's imports, the package that first imported it (root: "").
func reach(g map[string][]string, root, gateway string) map[string]string {
	from := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == gateway {
			continue
		}
		for _, imp := range g[p] {
			if _, seen := from[imp]; !seen {
				from[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return from
}

// chain is the import chain from the root to p.
func chain(from map[string]string, p string) string {
	var c []string
	for ; p != ""; p = from[p] {
		c = append(c, p)
	}
	slices.Reverse(c)
	return strings.Join(c, " → ")
}

// violations lists, per forbidden package reachable, its shortest chain,
// shortest first.
func violations(g map[string][]string, root, forbidden, gateway string) []string {
	from := reach(g, root, gateway)
	var out []string
	for p := range from {
		if under(p, forbidden) {
			out = append(out, chain(from, p))
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.Count(a, "→"), strings.Count(b, "→")), strings.Compare(a, b))
	})
	return out
}

// TestBinaryLinks: cmd/slipway, built with the Makefile's tags and cgo
// setting, links none of the unlinked packages. go list does not see
// dead-code elimination, so this is stricter than the linker.
func TestBinaryLinks(t *testing.T) {
	g := graph(t)
	if _, ok := g[binary]; !ok {
		t.Fatalf("go list did not list %s", binary)
	}
	for _, r := range unlinked {
		if r.gateway != "" {
			if _, ok := g[r.gateway]; !ok {
				// The exception is stale: tighten the row.
				t.Errorf("%s is no longer linked: drop it as the gateway of %s", r.gateway, r.forbidden)
			}
		}
		if v := violations(g, binary, r.forbidden, r.gateway); len(v) > 0 {
			t.Errorf("cmd/slipway links %d packages under %s (%s); the shortest chain:\n  %s", len(v), r.forbidden, r.why, v[0])
		}
	}
}

// TestBinaryRulesCanFail: the reachability check finds a forbidden package
// on any path but the gateway's, and names the chain.
func TestBinaryRulesCanFail(t *testing.T) {
	g := map[string][]string{
		"main":  {"a", "authn"},
		"a":     {"b"},
		"b":     {"plugin"},
		"authn": {"github.com/docker/cli/cli/config"},
	}
	if got, want := violations(g, "main", "plugin", ""), []string{"main → a → b → plugin"}; !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}
	if got := violations(g, "main", "github.com/docker/cli", "authn"); len(got) != 0 {
		t.Errorf("through the gateway only: violations = %q", got)
	}
	g["b"] = append(g["b"], "github.com/docker/cli/cli/command")
	if got, want := violations(g, "main", "github.com/docker/cli", "authn"), []string{"main → a → b → github.com/docker/cli/cli/command"}; !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}
}

// TestTestBuildsUseMakefileTags: the e2e tests build the slipway they run
// with the Makefile's tags.
func TestTestBuildsUseMakefileTags(t *testing.T) {
	tags, _ := makefileBuild(t)
	if tags == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "e2e", "main_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"build"`) && strings.Contains(line, `"./cmd/slipway"`) {
			if !strings.Contains(line, `"-tags", "`+tags+`"`) {
				t.Errorf("e2e/main_test.go builds slipway without -tags %s:\n%s", tags, strings.TrimSpace(line))
			}
			return
		}
	}
	t.Error("e2e/main_test.go: no go build of ./cmd/slipway found")
}
