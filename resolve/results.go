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
		Target string `json:"target"`
		Ref    string `json:"ref"`
		Pushed bool   `json:"pushed"`
	} `json:"targets"`
}

// LoadResults reads a run's results JSON (pipeline.Results, as written by
// --output-json) and returns the pushed reference of each target that was
// pushed to a registry: target name → REPO@sha256:…. Targets that were not
// pushed, or were written to an OCI layout (oci:DIR@…), are left out.
func LoadResults(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing results %s: %w", path, err)
	}
	refs := map[string]string{}
	for _, t := range r.Targets {
		if !t.Pushed || t.Ref == "" || strings.HasPrefix(t.Ref, "oci:") {
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
		refs[t.Target] = t.Ref
	}
	return refs, nil
}
