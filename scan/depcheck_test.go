package scan_test

import (
	"os/exec"
	"strings"
	"testing"
)

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

func checkNone(t *testing.T, pkg, what string, deps []string, forbidden ...string) {
	t.Helper()
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("%s %s %s", pkg, what, dep)
			}
		}
	}
}

// TestDependencies keeps Trivy behind scan/trivy and the CLI libraries in
// cmd/, so pipeline tests and the other stages link scan without either.
func TestDependencies(t *testing.T) {
	const scanPkg, trivyPkg = "github.com/slipway-build/slipway/scan", "github.com/slipway-build/slipway/scan/trivy"
	checkNone(t, scanPkg, "depends on", goList(t, "-deps", scanPkg),
		"github.com/aquasecurity/", "github.com/spf13/viper", "github.com/spf13/cobra")
	// Trivy's image package links docker/cli and with it cobra (for its
	// Docker-daemon image source), so scan/trivy can only promise not to
	// import cobra itself; viper must not be linked at all.
	checkNone(t, trivyPkg, "depends on", goList(t, "-deps", trivyPkg), "github.com/spf13/viper")
	checkNone(t, trivyPkg, "imports", goList(t, "-f", `{{join .Imports " "}}`, trivyPkg), "github.com/spf13/cobra")
}
