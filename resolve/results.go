package resolve

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// results is the part of pipeline.Results that resolve reads. It is
// declared here, not imported, so that resolve does not depend on the
// pipeline and its build, scan and sign stages; a test checks that it
// reads what pipeline.Results writes.
type results struct {
	Targets []struct {
		Target string   `json:"target"`
		Ref    string   `json:"ref"`
		Tags   []string `json:"tags"`
		Pushed bool     `json:"pushed"`
	} `json:"targets"`
}

// LoadResults reads a run's results JSON (pipeline.Results, as written by
// --output-json) and returns what was pushed to a registry for each target:
// target name → its REPO@sha256:… and the tags pushed with it. Targets that
// were not pushed, or were written to an OCI layout (oci:DIR@…) or archive
// (oci-archive:FILE@…), are left out.
func LoadResults(path string) (map[string]Pushed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing results %s: %w", path, err)
	}
	refs := map[string]Pushed{}
	for _, t := range r.Targets {
		if !t.Pushed || t.Ref == "" || strings.HasPrefix(t.Ref, "oci:") || strings.HasPrefix(t.Ref, "oci-archive:") {
			continue
		}
		if t.Target == "" {
			return nil, fmt.Errorf("results %s: a pushed target has no name", path)
		}
		if _, dup := refs[t.Target]; dup {
			return nil, fmt.Errorf("results %s: target %s appears twice", path, t.Target)
		}
		if _, err := name.NewDigest(t.Ref); err != nil {
			return nil, fmt.Errorf("results %s: target %s: %w", path, t.Target, err)
		}
		refs[t.Target] = Pushed{Ref: t.Ref, Tags: t.Tags}
	}
	return refs, nil
}
