package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/resolve"
)

// TestPushedRecord (issue 14 item 11): the pushed record, which resolve
// reads, is merged per target by runs that push; entries of targets a run
// did not push (another target, a failed push, a layout write) are kept.
func TestPushedRecord(t *testing.T) {
	dir := t.TempDir()
	lc := &loadedConfig{Config: &pipeline.Config{OCILayout: filepath.Join(dir, "dist", "oci")}}
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	first := &pipeline.Results{Targets: []pipeline.TargetResult{
		{Target: "hello", Ref: "r.example/team/hello@" + d("1"), Tags: []string{"v1"}, Pushed: true},
		{Target: "worker", Ref: "r.example/team/worker@" + d("2"), Tags: []string{"latest"}, Pushed: true},
	}}
	recordPushed(lc, first, discard())
	// A later push of hello only; worker fails this time.
	second := &pipeline.Results{Targets: []pipeline.TargetResult{
		{Target: "hello", Ref: "r.example/team/hello@" + d("3"), Tags: []string{"v2"}, Pushed: true},
		{Target: "worker", Gate: "fail", Error: "gate of worker: 1 HIGH"},
	}}
	recordPushed(lc, second, discard())
	// A local build: the last run's results, not the pushed record.
	recordLast(lc, &pipeline.Results{Targets: []pipeline.TargetResult{
		{Target: "hello", Ref: "oci:" + filepath.Join(dir, "dist", "oci") + "@" + d("4"), Pushed: true},
	}}, discard())

	got, err := resolve.LoadResults(pushedResultsPath(lc))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]resolve.Pushed{
		"hello":  {Ref: "r.example/team/hello@" + d("3"), Tags: []string{"v2"}},
		"worker": {Ref: "r.example/team/worker@" + d("2"), Tags: []string{"latest"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pushed record (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(lastResultsPath(lc)); err != nil {
		t.Errorf("last results: %v", err)
	}
	if lastResultsPath(lc) == pushedResultsPath(lc) {
		t.Fatal("the last run's results and the pushed record are one file")
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
