// Package slipway holds what the module itself knows at build time: its
// go.mod, for the versions of its dependencies where a binary's build
// info has none (test binaries record no dependencies).
package slipway

import (
	_ "embed"

	"golang.org/x/mod/modfile"
)

//go:embed go.mod
var goMod []byte

// Requirement is the version of module path that go.mod selects (its
// replacement's version when it is replaced), or "" when go.mod does not
// require it.
func Requirement(path string) string { return requirement(goMod, path) }

func requirement(gomod []byte, path string) string {
	f, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		return ""
	}
	for _, r := range f.Replace {
		if r.Old.Path == path && r.New.Version != "" {
			return r.New.Version
		}
	}
	for _, r := range f.Require {
		if r.Mod.Path == path {
			return r.Mod.Version
		}
	}
	return ""
}
