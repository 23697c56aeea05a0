package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/internal/fakes"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/slipway-build/slipway/scan"
)

func jobs(names ...string) []pipeline.Job {
	var out []pipeline.Job
	for _, n := range names {
		repo, _ := name.NewRepository("registry.example.com/team/" + n)
		out = append(out, pipeline.Job{
			Target:     build.Target{Name: n, Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}}},
			BaseRef:    build.Scratch,
			Tags:       []string{"latest"},
			Repository: repo,
		})
	}
	return out
}

var high = scan.Finding{ID: "CVE-2022-32149", Severity: scan.SeverityHigh, PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7"}

func stages(log *fakes.Log, b *fakes.Builder, findings map[string][]scan.Finding) pipeline.Stages {
	return pipeline.Stages{
		Builder:     b,
		Scanner:     &fakes.Scanner{Builder: b, Findings: findings},
		Signer:      &fakes.Signer{Log: log},
		Destination: &fakes.Destination{Log: log},
	}
}

func TestRunWritesImageSignaturesThenTags(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	res, err := pipeline.Run(context.Background(), jobs("a", "b"), stages(log, b, nil), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Targets are written side by side; each in the order image,
	// signatures, tag.
	for _, target := range []string{"a", "b"} {
		var got []string
		for _, e := range log.Entries {
			if kind, tg, _ := strings.Cut(e, " "); tg == target {
				got = append(got, kind)
			}
		}
		if strings.Join(got, ",") != "image,signatures,tag" {
			t.Fatalf("writes of %s = %v (all: %v)", target, got, log.Entries)
		}
	}
	for _, tr := range res.Targets {
		if !tr.Pushed || tr.Gate != "pass" || len(tr.Signatures) != 1 || tr.Digest == "" {
			t.Fatalf("result %+v", tr)
		}
	}
}

func TestRunAbortWritesNothing(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	res, err := pipeline.Run(context.Background(), jobs("clean", "vuln"), stages(log, b, map[string][]scan.Finding{"vuln": {high}}), pipeline.RunOptions{})
	var pv *scan.PolicyViolation
	if !errors.As(err, &pv) {
		t.Fatalf("err = %v, want a policy violation", err)
	}
	if len(log.Entries) != 0 {
		t.Fatalf("wrote %v after a failed gate", log.Entries)
	}
	if res.Targets[0].Gate != "pass" || res.Targets[1].Gate != "fail" || res.Targets[1].Findings["HIGH"] != 1 {
		t.Fatalf("results %+v", res.Targets)
	}
}

func TestRunContinueWritesThePassing(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	_, err := pipeline.Run(context.Background(), jobs("clean", "vuln"), stages(log, b, map[string][]scan.Finding{"vuln": {high}}), pipeline.RunOptions{ContinueOnFailure: true})
	if err == nil {
		t.Fatal("want the gate failure reported")
	}
	if got := strings.Join(log.Entries, ","); got != "image clean,signatures clean,tag clean" {
		t.Fatalf("writes = %s", got)
	}
}

func TestRunBuildErrorWritesNothing(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{Errs: map[string]error{"b": errors.New("compile error")}}
	_, err := pipeline.Run(context.Background(), jobs("a", "b"), stages(log, b, nil), pipeline.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "building b: compile error") {
		t.Fatalf("err = %v", err)
	}
	if len(log.Entries) != 0 {
		t.Fatalf("wrote %v", log.Entries)
	}
}

// TestRunPreflightFailsTheRun: the push preflight runs beside the builds;
// its failure is the run's error, and nothing is written.
func TestRunPreflightFailsTheRun(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	st := stages(log, b, nil)
	denied := errors.New("cannot push: unauthorized")
	st.Destination = &fakes.Destination{Log: log, CheckErr: denied}
	res, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{ContinueOnFailure: true})
	if !errors.Is(err, denied) || len(log.Entries) != 0 {
		t.Fatalf("err = %v, writes = %v: want the preflight error and no write", err, log.Entries)
	}
	for _, tr := range res.Targets {
		if tr.Pushed || tr.Error != "" {
			t.Errorf("target result %+v after a failed preflight", tr)
		}
	}
}

func TestRunMissingDBFailsBeforeBuilding(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	st := stages(log, b, nil)
	dbErr := errors.New("vulnerability DB not found in /nowhere (run slipway db pull)")
	st.Scanner = scan.Cached(&fakes.Scanner{Builder: b, DBErr: dbErr}, t.TempDir())
	_, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{})
	if !errors.Is(err, dbErr) || len(b.Builds) != 0 || len(log.Entries) != 0 {
		t.Fatalf("err = %v, builds = %v, writes = %v: want the DB error before any build", err, b.Builds, log.Entries)
	}
}

func TestRunBaseVerifiedOnce(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	st := stages(log, b, nil)
	calls := 0
	st.ResolveBase = func(ctx context.Context, ref string) (*build.Base, error) {
		return &build.Base{Name: "example.com/base:1", Ref: "example.com/base:1"}, nil
	}
	st.VerifyBase = func(ctx context.Context, base *build.Base) error {
		calls++
		return &scan.PolicyViolation{}
	}
	j := jobs("a", "b")
	for i := range j {
		j[i].BaseRef = "example.com/base:1"
	}
	_, err := pipeline.Run(context.Background(), j, st, pipeline.RunOptions{})
	if err == nil || calls != 1 || len(b.Builds) != 0 || len(log.Entries) != 0 {
		t.Fatalf("err = %v, verify calls = %d, builds = %v, writes = %v", err, calls, b.Builds, log.Entries)
	}
}

// TestRunWriteErrorStopsThatTarget: an image write that fails leaves that
// target without signatures and tags; the other target is still written,
// and the error names the failed one.
func TestRunWriteErrorStopsThatTarget(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	st := stages(log, b, nil)
	writeErr := errors.New("registry said 500")
	st.Destination = &fakes.Destination{Log: log, WriteErr: map[string]error{"a": writeErr}}
	res, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{ContinueOnFailure: true})
	if !errors.Is(err, writeErr) || !strings.Contains(err.Error(), "pushing a") {
		t.Fatalf("err = %v, want the write error of a", err)
	}
	if got := strings.Join(log.Entries, ","); got != "image b,signatures b,tag b" {
		t.Fatalf("writes = %s, want only b's", got)
	}
	if res.Targets[0].Pushed || res.Targets[0].Error == "" || !res.Targets[1].Pushed {
		t.Fatalf("results: %+v", res.Targets)
	}
}

// TestRunCancelledBeforeWriting: a run cancelled after every target was
// prepared (built, scanned, signed) writes nothing and says it was
// cancelled.
func TestRunCancelledBeforeWriting(t *testing.T) {
	log := &fakes.Log{}
	b := &fakes.Builder{}
	st := stages(log, b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prepared := 0
	res, err := pipeline.Run(ctx, jobs("a"), st, pipeline.RunOptions{
		// The last step before writing reports the scan; cancel there.
		OnReport: func(pipeline.Job, *scan.Report) { prepared++; cancel() },
	})
	if !errors.Is(err, context.Canceled) || prepared != 1 {
		t.Fatalf("err = %v, prepared = %d: want context.Canceled after preparing", err, prepared)
	}
	if len(log.Entries) != 0 || res.Targets[0].Pushed {
		t.Fatalf("wrote %v after the cancellation", log.Entries)
	}
}

// preparingSigner is a fakes.Signer whose set-up (Prepare) fails with err.
type preparingSigner struct {
	fakes.Signer
	err      error
	prepared atomic.Int32
}

func (s *preparingSigner) Prepare(context.Context) error {
	s.prepared.Add(1)
	return s.err
}

// TestRunSignerPreparedBesideBuilds: a signer's set-up (key decryption)
// runs in the preflight; its failure fails the run and nothing is written.
func TestRunSignerPreparedBesideBuilds(t *testing.T) {
	log := &fakes.Log{}
	st := stages(log, &fakes.Builder{}, nil)
	wrong := errors.New("decrypting sign.key: wrong password")
	ps := &preparingSigner{Signer: fakes.Signer{Log: log}, err: wrong}
	st.Signer = ps
	if _, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{}); !errors.Is(err, wrong) || len(log.Entries) != 0 {
		t.Fatalf("err = %v, writes = %v: want the signer's error and no write", err, log.Entries)
	}
	ps.err = nil
	if _, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := ps.prepared.Load(); n != 2 {
		t.Errorf("Prepare called %d times in two runs, want once per run", n)
	}
}

// TestRunLayoutTargetsSideBySide: targets written at once into one OCI
// layout all land in its index.json (each write rewrites it).
func TestRunLayoutTargetsSideBySide(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	l, err := publish.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := stages(&fakes.Log{}, &fakes.Builder{}, nil)
	st.Signer = nil
	st.Destination = &pipeline.LayoutDestination{Layout: l, Dir: dir}
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	if _, err := pipeline.Run(context.Background(), jobs(names...), st, pipeline.RunOptions{Jobs: 8}); err != nil {
		t.Fatal(err)
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		t.Fatalf("layout has %d targets, want %d: %+v", len(entries), len(names), entries)
	}
}

// Issue 14 item 12: the results JSON uses one key style (snake_case),
// including the base ({"name", "digest"}, was {"Name", "Digest"}).
func TestResultsJSONKeys(t *testing.T) {
	tr := pipeline.TargetResult{Target: "a", Base: build.BaseInfo{Name: "example.com/base:1", Digest: "sha256:" + strings.Repeat("0", 64)}, Gate: "pass"}
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var base map[string]any
	if err := json.Unmarshal(m["base"], &base); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	for k := range base {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if strings.ToLower(k) != k {
			t.Errorf("key %q is not snake_case: %s", k, b)
		}
	}
	if base["name"] != "example.com/base:1" {
		t.Errorf("base = %v", base)
	}
}

// platformsBuilder records the platforms each Build is asked for.
type platformsBuilder struct {
	fakes.Builder
	mu   sync.Mutex
	seen map[string][]string
}

func (b *platformsBuilder) Build(ctx context.Context, t build.Target) (*build.Result, error) {
	b.mu.Lock()
	for _, p := range t.Platforms {
		b.seen[t.Name] = append(b.seen[t.Name], build.PlatformString(p))
	}
	b.mu.Unlock()
	return b.Builder.Build(ctx, t)
}

// TestRunExpandsAllPlatforms: a target planned with platforms: [all] is
// built for the base's linux platforms; on scratch it fails.
func TestRunExpandsAllPlatforms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "base")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := lp.AppendIndex(mutate.AppendManifests(empty.Index, adds...)); err != nil {
		t.Fatal(err)
	}
	js := jobs("a")
	js[0].Target.Platforms, js[0].Target.AllPlatforms, js[0].BaseRef = nil, true, build.LayoutPrefix+dir
	b := &platformsBuilder{seen: map[string][]string{}}
	st := stages(&fakes.Log{}, &fakes.Builder{}, nil)
	st.Builder, st.Scanner, st.Signer = b, nil, nil
	st.ResolveBase = nil // build.ResolveBase
	if _, err := pipeline.Run(context.Background(), js, st, pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := b.seen["a"]; !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("built for %v", got)
	}
	js[0].BaseRef = build.Scratch
	if _, err := pipeline.Run(context.Background(), js, st, pipeline.RunOptions{}); err == nil || !strings.Contains(err.Error(), "scratch") {
		t.Errorf("all on scratch: err = %v", err)
	}
}

// blockingBuilder records the targets it was asked to build and blocks
// until the run is cancelled.
type blockingBuilder struct {
	mu      sync.Mutex
	started []string
}

func (b *blockingBuilder) Build(ctx context.Context, t build.Target) (*build.Result, error) {
	b.mu.Lock()
	b.started = append(b.started, t.Name)
	b.mu.Unlock()
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

// Issue 13: with DeferMainCheck the check that each main: is one package
// main runs beside the builds instead of before them, and a failed check
// is still the run's config error (the target's key), with nothing
// written.
func TestRunChecksMainBesideBuilds(t *testing.T) {
	dir := t.TempDir()
	pipeline.WriteModule(t, dir)
	planned := func(cfg string) []pipeline.Job {
		t.Helper()
		c, err := pipeline.DecodeStrict("f.yaml", []byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate("f.yaml"); err != nil {
			t.Fatal(err)
		}
		js, err := pipeline.Plan(context.Background(), c, pipeline.PlanOptions{ConfigDir: dir, Environ: os.Environ(), DeferMainCheck: true})
		if err != nil {
			t.Fatalf("Plan with DeferMainCheck: %v", err)
		}
		return js
	}

	log := &fakes.Log{}
	b := &blockingBuilder{}
	st := pipeline.Stages{Builder: b, Destination: &fakes.Destination{Log: log}}
	_, err := pipeline.Run(context.Background(), planned("targets:\n  - name: a\n    main: ./cmd/app\n  - name: b\n    main: ./lib\n"), st, pipeline.RunOptions{})
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || ce.Key != "targets[1].main" || !strings.Contains(ce.Msg, "./lib is package lib") {
		t.Fatalf("err = %v, want the config error of targets[1].main", err)
	}
	slices.Sort(b.started)
	if !slices.Equal(b.started, []string{"a", "b"}) {
		t.Fatalf("builds started before the check's verdict: %v, want both", b.started)
	}
	if len(log.Entries) != 0 {
		t.Fatalf("written after a failed main check: %v", log.Entries)
	}

	// Package mains pass, and the run writes.
	st = stages(log, &fakes.Builder{}, nil)
	st.Scanner, st.Signer = nil, nil
	if _, err := pipeline.Run(context.Background(), planned("targets:\n  - name: a\n    main: ./cmd/app\n"), st, pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(log.Entries) == 0 {
		t.Fatal("nothing written")
	}
}
