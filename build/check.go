package build

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"strings"
)

// NotMainError is a target whose main is not one package main: `go build`
// would write an archive (or nothing) instead of an executable.
type NotMainError struct {
	// Main is the target's main as configured.
	Main string
	// Packages are "import/path name" for each package it names.
	Packages []string
}

func (e *NotMainError) Error() string {
	if len(e.Packages) != 1 {
		return fmt.Sprintf("%s names %d packages (%s); set main: to the directory of one package main, e.g. ./cmd/app",
			e.Main, len(e.Packages), strings.Join(e.Packages, ", "))
	}
	path, name, _ := strings.Cut(e.Packages[0], " ")
	return fmt.Sprintf("%s is package %s (%s), not a package main: go build would produce a library archive, not a program; set main: to the directory of the package main to build (e.g. ./cmd/app)",
		e.Main, name, path)
}

// CheckMain fails with a *NotMainError when t.Main, as `go list` sees it for
// t's first platform with t's flags and environment, is not exactly one
// package main. When go list itself fails (no such directory, syntax
// errors, missing modules), it returns nil: `go build` fails on the same
// input and reports it.
func CheckMain(ctx context.Context, t *Target) error {
	check, err := StartCheckMain(t)
	if err != nil {
		return err
	}
	return check(ctx)
}

// StartCheckMain prepares CheckMain for t and returns it, to be run beside
// t's build: the go list it makes is the one the binary cache key of t's
// first platform uses, run by whichever of them asks first. t may be
// copied (into a build) once StartCheckMain has returned.
func StartCheckMain(t *Target) (check func(context.Context) error, err error) {
	gobin, err := findGo()
	if err != nil {
		return nil, err
	}
	var penv []string
	if len(t.Platforms) > 0 {
		if penv, err = platformEnv(t.Platforms[0]); err != nil {
			return nil, err
		}
	}
	env := buildEnv(os.Environ(), penv, t.Env, t.SecretEnv)
	l := &listing{key: listingKey(gobin, *t, env)}
	t.listed = l
	tc := *t
	return func(ctx context.Context) error {
		out, err := l.get(ctx, gobin, tc, env)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		var pkgs []string
		err = eachListed(out, func(pkg listedPackage) error {
			if !pkg.DepOnly {
				pkgs = append(pkgs, pkg.ImportPath+" "+pkg.Name)
			}
			return nil
		})
		if err != nil {
			return nil // go build will say what is wrong
		}
		if len(pkgs) == 1 && strings.HasSuffix(pkgs[0], " main") {
			return nil
		}
		return &NotMainError{Main: tc.Main, Packages: pkgs}
	}, nil
}

// checkVCS fails when the VCS stamp go build put in the binary at bin
// contradicts t.Revision and t.Dirty, which templates and provenance were
// made from. Without a recorded revision, or without a stamp (no
// repository, no git), there is nothing to contradict.
func checkVCS(bin string, t Target) error {
	if t.Revision == "" {
		return nil
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("reading the build info of the binary: %w", err)
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return nil
	}
	if rev != t.Revision || modified != fmt.Sprint(t.Dirty) {
		return fmt.Errorf("the checkout changed during the build: go build stamped revision %s modified=%s, but it was %s modified=%v when slipway started, as templates and provenance record it; do not write into the checkout while slipway builds (or ignore those paths in .gitignore) and run it again",
			rev, modified, t.Revision, t.Dirty)
	}
	return nil
}
