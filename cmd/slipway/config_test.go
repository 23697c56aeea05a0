package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
)

// load runs loadConfig on a config file with flags parsed from args.
func load(t *testing.T, cfg string, args ...string) (*loadedConfig, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "slipway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &globalFlags{config: path}
	cmd := newBuildCmd(g)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	f := &buildFlags{}
	return loadConfig(g, cmd.Flags(), f.bindings())
}

func TestConfigPrecedence(t *testing.T) {
	cfg := `repository: file.example.com/team
platforms: [linux/amd64]
scan:
  db: {max_age: 24h}
  severity: [CRITICAL]
targets:
  - name: hello
    image:
      env: {LOG_FORMAT: json, MixedCase: "1"}
      annotations: {org.opencontainers.image.description: "x"}
`
	// File only.
	lc, err := load(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Repository != "file.example.com/team" || lc.Scan.DB.MaxAge != 24*time.Hour || lc.Scan.Severity[0] != "CRITICAL" {
		t.Fatalf("file values: %+v", lc.Config)
	}
	// Map keys keep their case and dots (viper would fold and split them).
	img := lc.Targets[0].Image
	if img.Env["LOG_FORMAT"] != "json" || img.Env["MixedCase"] != "1" || img.Annotations["org.opencontainers.image.description"] != "x" {
		t.Fatalf("user maps changed: %+v", img)
	}
	// Defaults fill what the file leaves out; the default layout is
	// relative to the file, as every path in it.
	if lc.OCILayout != filepath.Join(lc.Dir, pipeline.DefaultOCILayout) || lc.OnFailure != pipeline.OnFailureAbort {
		t.Fatalf("defaults: %+v", lc.Config)
	}

	// Env over file.
	t.Setenv("SLIPWAY_REPOSITORY", "env.example.com/team")
	t.Setenv("SLIPWAY_PLATFORMS", "linux/amd64,linux/arm64")
	t.Setenv("SLIPWAY_SCAN_DB_MAX_AGE", "1h")
	t.Setenv("SLIPWAY_SCAN_SEVERITY", "HIGH,CRITICAL")
	t.Setenv("SLIPWAY_ON_FAILURE", "continue")
	lc, err = load(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Repository != "env.example.com/team" || len(lc.Platforms) != 2 || lc.Scan.DB.MaxAge != time.Hour ||
		len(lc.Scan.Severity) != 2 || lc.OnFailure != pipeline.OnFailureContinue {
		t.Fatalf("env values: %+v", lc.Config)
	}

	// Flags over env.
	lc, err = load(t, cfg, "--repository", "flag.example.com/team", "--platform", "linux/arm64", "--severity", "LOW")
	if err != nil {
		t.Fatal(err)
	}
	if lc.Repository != "flag.example.com/team" || len(lc.Platforms) != 1 || lc.Platforms[0] != "linux/arm64" || lc.Scan.Severity[0] != "LOW" {
		t.Fatalf("flag values: %+v", lc.Config)
	}

	// A bad value from the environment is a config error naming the key.
	t.Setenv("SLIPWAY_SCAN_DB_MAX_AGE", "soon")
	_, err = load(t, cfg)
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || exitCode(err) != exitUsage {
		t.Fatalf("bad env value: err = %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 1},
		{&usageError{errors.New("bad flag")}, 2},
		{errors.New(`unknown command "bogus" for "slipway"`), 2},
		{&pipeline.ConfigError{Key: "x", Msg: "bad"}, 2},
		{errors.Join(&pipeline.ConfigError{Msg: "bad"}), 2},
		{fmt.Errorf("gate of a: %w", &scan.PolicyViolation{}), 3},
		{fmt.Errorf("verifying: %w", &sign.PolicyError{Reasons: []string{"unsigned"}}), 3},
		{errors.Join(fmt.Errorf("gate of a: %w", &scan.PolicyViolation{}), fmt.Errorf("gate of b: %w", &scan.PolicyViolation{})), 3},
		// A violation next to an operational failure: the run could not be
		// fully judged, so it is an operational error.
		{errors.Join(&scan.PolicyViolation{}, errors.New("registry down")), 1},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestConfigErrorNamesItsSource: a bad value is blamed on the flag or the
// SLIPWAY_* variable that set it, and one from the file on its line.
func TestConfigErrorNamesItsSource(t *testing.T) {
	cfg := "repository: r.example.com/team\nplatforms:\n  - linux/amd64\n  - plan9/mips\ntargets:\n  - name: hello\n    image:\n      workdir: relative\n"
	asConfigError := func(err error) *pipeline.ConfigError {
		t.Helper()
		var ce *pipeline.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a *ConfigError", err)
		}
		return ce
	}
	// From the file: file, line and key.
	_, err := load(t, cfg)
	if ce := asConfigError(err); ce.File == "" || ce.Line != 4 || ce.Key != "platforms[1]" {
		t.Errorf("file error = %q (line %d, key %q), want line 4, platforms[1]", err, ce.Line, ce.Key)
	}
	fixed := strings.Replace(cfg, "plan9/mips", "linux/arm64", 1)
	_, err = load(t, fixed)
	if ce := asConfigError(err); ce.Line != 8 || ce.Key != "targets[0].image.workdir" {
		t.Errorf("file error = %q, want line 8, targets[0].image.workdir", err)
	}
	fixed = strings.Replace(fixed, "relative", "/work", 1)
	// From a flag: the flag, not the file.
	_, err = load(t, fixed, "--platform", "linux/amd64,all")
	if ce := asConfigError(err); ce.Key != "--platform" || ce.File != "" || !strings.Contains(err.Error(), `"all"`) {
		t.Errorf("flag error = %q, want it to name --platform and not the file", err)
	}
	// From the environment: the variable.
	t.Setenv("SLIPWAY_PLATFORMS", "linux/amd64,bogus")
	_, err = load(t, fixed)
	if ce := asConfigError(err); ce.Key != "SLIPWAY_PLATFORMS" || ce.File != "" {
		t.Errorf("env error = %q, want it to name SLIPWAY_PLATFORMS", err)
	}
	// A flag wins over the variable, and its error is the flag's.
	_, err = load(t, fixed, "--platform", "nope")
	if ce := asConfigError(err); ce.Key != "--platform" {
		t.Errorf("flag over env error = %q, want --platform", err)
	}
}

// Issue 14 item 8: with several targets, a report output without
// {{.Target}} is a config error naming the file, line and key (it was
// silently split).
func TestReportOutputNeedsTarget(t *testing.T) {
	cfg := "targets: [{name: a}, {name: b}]\nscan:\n  reports:\n    - {format: json, output: \"-\"}\n    - {format: sarif, output: out.sarif}\n"
	lc, err := load(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.checkReportOutputs(1); err != nil {
		t.Errorf("one target: %v", err)
	}
	err = lc.checkReportOutputs(2)
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || ce.Key != "scan.reports[1].output" || ce.Line != 5 || !strings.Contains(err.Error(), "{{.Target}}") {
		t.Fatalf("two targets: err = %v (line %d), want scan.reports[1].output at line 5", err, lineOf(ce))
	}
	lc2, err := load(t, strings.Replace(cfg, "out.sarif", `"out-{{.Target}}.sarif"`, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := lc2.checkReportOutputs(2); err != nil {
		t.Errorf("with {{.Target}}: %v", err)
	}
}

func lineOf(ce *pipeline.ConfigError) int {
	if ce == nil {
		return 0
	}
	return ce.Line
}
