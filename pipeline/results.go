package pipeline

import (
	"encoding/json"
	"time"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/scan"
)

// Results describes a run, for machines (--output-json) and summaries.
type Results struct {
	Targets []TargetResult `json:"targets"`
}

// TargetResult is what happened to one target.
type TargetResult struct {
	Target string `json:"target"`
	// Ref is where the image was written: repo@sha256:… or oci:DIR@sha256:….
	Ref string `json:"ref,omitempty"`
	// Digest is the index digest.
	Digest    string           `json:"digest,omitempty"`
	Platforms []PlatformResult `json:"platforms,omitempty"`
	Tags      []string         `json:"tags,omitempty"`
	Pushed    bool             `json:"pushed"`
	// Findings counts findings by severity (suppressed ones excluded).
	Findings map[string]int `json:"findings,omitempty"`
	// Gate is "pass", "fail" or "skipped".
	Gate       string              `json:"gate"`
	Signatures []string            `json:"signatures,omitempty"`
	Base       build.BaseInfo      `json:"base"`
	Timings    map[string]Duration `json:"timings"`
	// Cached lists the stages answered from slipway\'s caches ("build",
	// "scan"): an unchanged rerun compiles and scans nothing.
	Cached []string `json:"cached,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// PlatformResult is one platform's manifest.
type PlatformResult struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
}

// Duration marshals as seconds.
type Duration time.Duration

// MarshalJSON writes d in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

func (tr *TargetResult) setBuild(b *build.Result) {
	tr.Digest = b.Digest.String()
	tr.Base = b.Base
	tr.Gate = "skipped"
	cached := len(b.Images) > 0
	for _, pi := range b.Images {
		cached = cached && pi.Cached
		tr.Platforms = append(tr.Platforms, PlatformResult{Platform: build.PlatformString(pi.Platform), Digest: pi.Digest.String()})
	}
	if cached {
		tr.Cached = append(tr.Cached, "build")
	}
}

func (tr *TargetResult) setScan(r *scan.Report, gateErr error) {
	if r.Cached {
		tr.Cached = append(tr.Cached, "scan")
	}
	tr.Findings = map[string]int{}
	for sev, n := range r.Counts() {
		tr.Findings[string(sev)] = n
	}
	tr.Gate = "pass"
	if gateErr != nil { // a policy violation, or cannot judge
		tr.Gate = "fail"
	}
}
