package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
)

func TestImageFlags(t *testing.T) {
	one := []pipeline.Job{{Target: build.Target{Name: "hello"}}}
	two := append(one, pipeline.Job{Target: build.Target{Name: "worker"}})
	got, err := imageFlags([]string{"reg.example.com/hello:v1"}, one)
	if err != nil || got["hello"] != "reg.example.com/hello:v1" {
		t.Fatalf("bare REF, one target: %v %v", got, err)
	}
	got, err = imageFlags([]string{"worker=reg.example.com/w@sha256:" + strings.Repeat("0", 64)}, two)
	if err != nil || len(got) != 1 || !strings.HasPrefix(got["worker"], "reg.example.com/w@") {
		t.Fatalf("TARGET=REF: %v %v", got, err)
	}
	for _, bad := range [][]string{{"reg.example.com/hello:v1"}, {"other=reg.example.com/x"}, {"hello=a/b", "hello=c/d"}} {
		var ue *usageError
		if _, err := imageFlags(bad, two); !errors.As(err, &ue) || exitCode(err) != exitUsage {
			t.Errorf("%q: want a usage error, got %v", bad, err)
		}
	}
}

// TestRebuildDueExit: a rebuild due is exit 3; joined with an operational
// failure (another target could not be judged) it is exit 1.
func TestRebuildDueExit(t *testing.T) {
	due := &pipeline.RebuildDue{Targets: []string{"hello"}, Reasons: map[string][]string{"hello": {"base moved"}}}
	if c := exitCode(due); c != exitPolicy {
		t.Fatalf("RebuildDue: exit %d, want %d", c, exitPolicy)
	}
	if c := exitCode(fmt.Errorf("outdated: %w", due)); c != exitPolicy {
		t.Fatalf("wrapped RebuildDue: exit %d", c)
	}
	if c := exitCode(errors.Join(due, errors.New("checking worker: registry down"))); c != exitError {
		t.Fatalf("RebuildDue with an operational failure: exit %d, want %d", c, exitError)
	}
	if c := exitCode(&scan.CannotJudgeError{}); c != exitError {
		t.Fatalf("cannot judge: exit %d", c)
	}
}

func TestPrintOutdated(t *testing.T) {
	res := &pipeline.OutdatedResults{RebuildDue: true, Targets: []pipeline.OutdatedTarget{{
		Target: "hello", Image: "reg.example.com/team/hello@sha256:" + strings.Repeat("a", 64), RebuildDue: true,
		Base: pipeline.OutdatedBase{Name: "debian:12", RecordedDigest: "sha256:" + strings.Repeat("1", 64), CurrentDigest: "sha256:" + strings.Repeat("2", 64), Moved: true},
		Findings: []pipeline.OutdatedFinding{
			{ID: "CVE-2023-4911", Severity: "HIGH", PkgName: "libc6", InstalledVersion: "2.36-9+deb12u1", FixedVersion: "2.36-9+deb12u3", Fix: pipeline.FixRebuild, Platforms: []string{"linux/amd64"}},
			{ID: "CVE-2024-24790", Severity: "CRITICAL", PkgName: "stdlib", InstalledVersion: "v1.22.1", Upgrade: "1.22.4", Fix: pipeline.FixModule, Platforms: []string{"linux/amd64"}},
			{ID: "CVE-2011-3374", Severity: "LOW", PkgName: "apt", Fix: pipeline.FixNone, Platforms: []string{"linux/amd64"}},
		},
		ModuleUpdates: []pipeline.ModuleUpdate{{Module: "stdlib", From: "v1.22.1", To: "1.22.4", Findings: []string{"CVE-2024-24790"}}},
		Reasons:       []string{"base moved: …"},
	}, {Target: "worker", Error: "checking worker: registry down", ImageRef: "reg.example.com/team/worker:latest"}}}
	var b strings.Builder
	printOutdated(&b, res)
	out := b.String()
	for _, want := range []string{"hello   rebuild due", "worker  error", "reg.example.com/team/worker:latest",
		"rebuild (current base)  HIGH", "newer Go", "1 fixed by neither", "hello: build with Go 1.22.4 or later (now v1.22.1): CVE-2024-24790", "hello: base moved: …"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "CVE-2011-3374") {
		t.Errorf("a finding nothing fixes is listed:\n%s", out)
	}
	if t.Failed() {
		t.Log(out)
	}
}
