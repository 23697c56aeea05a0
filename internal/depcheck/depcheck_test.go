package depcheck

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/slipway-build/slipway"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list runs `go list -deps -json` on the given packages of ours and
// returns every package it lists (ours and their dependencies) by import
// path.
func list(t *testing.T, pkgs ...string) map[string]pkg {
	t.Helper()
	args := []string{"list", "-deps", "-json=ImportPath,Imports,Deps"}
	for _, p := range pkgs {
		args = append(args, "./"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	cmd.Stderr = os.Stderr
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
		res[p.ImportPath] = p
	}
	return res
}

// under reports whether path is prefix or a package below it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/") || strings.HasSuffix(prefix, "/") && strings.HasPrefix(path, prefix)
}

const (
	viper  = "github.com/spf13/viper"
	cobra  = "github.com/spf13/cobra"
	spf13  = "github.com/spf13/" // cobra, viper, pflag
	trivy  = "github.com/aquasecurity/"
	cosign = "github.com/sigstore/cosign/v2"
)

// stages are the packages below cmd/ that the rules cover.
var stages = []string{"build", "publish", "pipeline", "scan", "scan/trivy", "sign", "sign/stage", "sign/vocab", "resolve"}

// rules is slipway's layering: flags and config files stay in cmd/, Trivy
// in scan/trivy, cosign in sign; the stages do not reach into each other's
// libraries. One row: none of pkgs may depend on forbidden (imported:
// false, not even transitively), or none of our packages they depend on,
// themselves included, may import it (imported: true).
var rules = []struct {
	pkgs      []string
	forbidden string
	imported  bool
	why       string
}{
	{stages, viper, false, "config files are read in cmd/ only"},
	{stages, spf13, true, "flags are cmd/'s: no package of ours below it imports cobra, viper or pflag"},
	// sign, sign/stage and scan/trivy get cobra through cosign's relic and
	// Trivy's docker/kubectl dependencies, which register flags in their
	// own packages; they never see ours.
	{[]string{"build", "publish", "pipeline", "scan", "sign/vocab", "resolve"}, cobra, false, "flags are cmd/'s"},
	// The signing stage gets SBOMs through its own SBOMMaker interface.
	{[]string{"build", "publish", "pipeline", "scan", "sign", "sign/stage", "sign/vocab", "resolve"}, trivy, false, "Trivy belongs in scan/trivy only"},
	// cosign only in sign (and sign/stage, through it).
	{[]string{"build", "publish", "pipeline", "scan", "sign/vocab", "resolve"}, cosign, false, "cosign belongs in sign only"},
}

func TestLayering(t *testing.T) {
	all := list(t, stages...)
	for _, r := range rules {
		for _, name := range r.pkgs {
			p, ok := all[module+"/"+name]
			if !ok {
				t.Fatalf("go list did not list %s", name)
			}
			if !r.imported {
				for _, d := range p.Deps {
					if under(d, r.forbidden) {
						t.Errorf("%s depends on %s (%s)", name, d, r.why)
						break
					}
				}
				continue
			}
			for _, d := range append(slices.Clone(p.Deps), p.ImportPath) {
				if !under(d, module) {
					continue
				}
				for _, imp := range all[d].Imports {
					if under(imp, r.forbidden) {
						t.Errorf("%s: %s imports %s (%s)", name, d, imp, r.why)
					}
				}
			}
		}
	}
}

// TestRulesCanFail: each kind of rule catches what it forbids.
func TestRulesCanFail(t *testing.T) {
	for _, c := range []struct {
		path, prefix string
		want         bool
	}{
		{"github.com/spf13/viper", viper, true},
		{"github.com/spf13/viper/internal/x", viper, true},
		{"github.com/spf13/viperish", viper, false},
		{"github.com/spf13/pflag", spf13, true},
		{"github.com/aquasecurity/trivy-db/pkg/db", trivy, true},
		{"github.com/sigstore/cosign/v2/pkg/oci", cosign, true},
		{"github.com/sigstore/sigstore/pkg/signature", cosign, false},
		{module + "/scan", module, true},
		{module + "x/scan", module, false},
	} {
		if got := under(c.path, c.prefix); got != c.want {
			t.Errorf("under(%s, %s) = %v, want %v", c.path, c.prefix, got, c.want)
		}
	}
}
