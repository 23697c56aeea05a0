package slipway

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestRequirementIsGoLists(t *testing.T) {
	const trivy = "github.com/aquasecurity/trivy"
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}{{with .Replace}} {{.Version}}{{end}}", trivy)
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", trivy, err)
	}
	f := strings.Fields(string(out))
	want := f[len(f)-1]
	if got := Requirement(trivy); got != want {
		t.Errorf("Requirement(%s) = %q, go list -m says %q", trivy, got, want)
	}
}

func TestRequirement(t *testing.T) {
	const gomod = `module example.com/m

go 1.26

require (
	example.com/a v1.2.3
	example.com/b v0.1.0 // indirect
	example.com/r v1.0.0
)

replace example.com/r => example.com/fork v1.0.1-fork
replace example.com/a => ../a
`
	for path, want := range map[string]string{
		"example.com/a":    "v1.2.3", // a directory replacement has no version
		"example.com/b":    "v0.1.0",
		"example.com/r":    "v1.0.1-fork",
		"example.com/none": "",
	} {
		if got := requirement([]byte(gomod), path); got != want {
			t.Errorf("requirement(%s) = %q, want %q", path, got, want)
		}
	}
	if got := requirement([]byte("not a go.mod {"), "example.com/a"); got != "" {
		t.Errorf("requirement of a broken go.mod = %q, want \"\"", got)
	}
}
