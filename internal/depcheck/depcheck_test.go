package depcheck

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs `go list -deps -json` on the given packages and returns them
// (not their dependencies) by import path.
func list(t *testing.T, pkgs ...string) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, pkgs...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	res := map[string]pkg{}
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		res[strings.TrimPrefix(p.ImportPath, "github.com/slipway-build/slipway/")] = p
	}
	return res
}

func hasDep(p pkg, prefix string) string {
	for _, d := range p.Deps {
		if d == prefix || strings.HasPrefix(d, prefix+"/") {
			return d
		}
	}
	return ""
}

func importsDirectly(p pkg, prefix string) string {
	for _, d := range p.Imports {
		if d == prefix || strings.HasPrefix(d, prefix+"/") {
			return d
		}
	}
	return ""
}

// TestLayering: flags and config files stay in cmd/; Trivy stays in
// scan/trivy; the stages do not reach into each other's libraries.
func TestLayering(t *testing.T) {
	const (
		viper  = "github.com/spf13/viper"
		cobra  = "github.com/spf13/cobra"
		trivy  = "github.com/aquasecurity/trivy"
		cosign = "github.com/sigstore/cosign/v2"
	)
	pkgs := list(t, "./build", "./publish", "./pipeline", "./scan", "./scan/trivy", "./sign", "./sign/stage", "./sign/vocab", "./resolve")
	for name, p := range pkgs {
		// No viper anywhere below cmd/, not even transitively.
		if d := hasDep(p, viper); d != "" {
			t.Errorf("%s depends on %s", name, d)
		}
		// No package of ours imports cobra.
		if d := importsDirectly(p, cobra); d != "" {
			t.Errorf("%s imports %s", name, d)
		}
	}
	// These stay free of cobra even transitively. (sign and scan/trivy get
	// it through cosign's relic and Trivy's docker/kubectl dependencies,
	// which register flags in their own packages; they never see ours.)
	for _, name := range []string{"build", "publish", "pipeline", "scan", "sign/vocab", "resolve"} {
		if d := hasDep(pkgs[name], cobra); d != "" {
			t.Errorf("%s depends on %s", name, d)
		}
	}
	// Trivy only in scan/trivy (the signing stage gets SBOMs through its
	// own SBOMMaker interface).
	for _, name := range []string{"build", "publish", "pipeline", "scan", "sign", "sign/stage", "sign/vocab", "resolve"} {
		if d := hasDep(pkgs[name], trivy); d != "" {
			t.Errorf("%s depends on %s (Trivy belongs in scan/trivy only)", name, d)
		}
	}
	// cosign only in sign (and sign/stage, through it).
	for _, name := range []string{"build", "publish", "pipeline", "scan", "sign/vocab", "resolve"} {
		if d := hasDep(pkgs[name], cosign); d != "" {
			t.Errorf("%s depends on %s (cosign belongs in sign only)", name, d)
		}
	}
}

// TestVocabImportsNothing: sign/vocab is the vocabulary every layer shares
// (pipeline validates configuration with it), so it may depend on nothing.
func TestVocabImportsNothing(t *testing.T) {
	p := list(t, "./sign/vocab")["sign/vocab"]
	if len(p.Imports) != 0 {
		t.Errorf("sign/vocab imports %v", p.Imports)
	}
}
