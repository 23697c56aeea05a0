package resolve

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-build/slipway/pipeline"
)

func TestLoadResults(t *testing.T) {
	got, err := LoadResults(filepath.Join("testdata", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Pushed{"hello": {Ref: helloRef, Tags: []string{"v1"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestLoadResultsPipeline checks that LoadResults reads what the pipeline
// writes.
func TestLoadResultsPipeline(t *testing.T) {
	res := pipeline.Results{Targets: []pipeline.TargetResult{
		{Target: "hello", Ref: helloRef, Digest: hDigest, Tags: []string{"v1"}, Pushed: true, Gate: "pass",
			Timings: map[string]pipeline.Duration{"build": pipeline.Duration(1500 * time.Millisecond)}},
		{Target: "worker", Ref: workerRef, Pushed: false, Gate: "skipped", Error: "pushing worker: denied"},
		{Target: "api", Gate: "fail"},
	}}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Pushed{"hello": {Ref: helloRef, Tags: []string{"v1"}}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadResultsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"not JSON", "{", "parsing results"},
		{"duplicate target", `{"targets":[{"target":"a","ref":"` + helloRef + `","pushed":true},{"target":"a","ref":"` + workerRef + `","pushed":true}]}`, "target a appears twice"},
		{"ref without digest", `{"targets":[{"target":"a","ref":"r/x:v1","pushed":true}]}`, "target a"},
		{"no name", `{"targets":[{"ref":"` + helloRef + `","pushed":true}]}`, "no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "results.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadResults(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadResults(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}
