package pipeline_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
)

// imageScanner is a fake scanner: each platform image's findings are set
// by its manifest digest, and the report merges them across platforms as
// scan/trivy does.
type imageScanner struct {
	findings map[v1.Hash][]scan.Finding
	unjudged map[v1.Hash][]scan.Unjudged
	scanned  []v1.Hash
}

func (s *imageScanner) DBIdentity() (string, error) { return "fake-db", nil }

func (s *imageScanner) Scan(_ context.Context, idx v1.ImageIndex) (*scan.Report, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	rep := &scan.Report{DB: scan.DBInfo{SchemaVersion: 2, UpdatedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}
	at := map[string]int{}
	for _, d := range im.Manifests {
		p := build.PlatformString(*d.Platform)
		s.scanned = append(s.scanned, d.Digest)
		rep.Platforms = append(rep.Platforms, p)
		for _, u := range s.unjudged[d.Digest] {
			u.Platform = p
			rep.Unjudged = append(rep.Unjudged, u)
		}
		for _, f := range s.findings[d.Digest] {
			k := f.ID + " " + f.PkgName + " " + f.InstalledVersion
			i, ok := at[k]
			if !ok {
				f.Platforms = nil
				rep.Findings = append(rep.Findings, f)
				i = len(rep.Findings) - 1
				at[k] = i
			}
			rep.Findings[i].Platforms = append(rep.Findings[i].Platforms, p)
		}
	}
	rep.Sort()
	return rep, nil
}

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}

	glibc  = scan.Finding{ID: "CVE-2023-4911", Severity: scan.SeverityHigh, PkgName: "libc6", PkgType: "debian", InstalledVersion: "2.36-9+deb12u1", FixedVersion: "2.36-9+deb12u3"}
	apt    = scan.Finding{ID: "CVE-2011-3374", Severity: scan.SeverityLow, PkgName: "apt", PkgType: "debian", InstalledVersion: "2.6.1"}
	xtext  = scan.Finding{ID: "CVE-2022-32149", Severity: scan.SeverityHigh, PkgName: "golang.org/x/text", PkgType: "gobinary", PkgPath: "app/hello", InstalledVersion: "v0.3.7", FixedVersion: "0.3.8"}
	stdlib = scan.Finding{ID: "CVE-2024-24790", Severity: scan.SeverityCritical, PkgName: "stdlib", PkgType: "gobinary", PkgPath: "app/hello", InstalledVersion: "v1.22.1", FixedVersion: "1.21.11, 1.22.4"}
	// A Go binary the base brings, with a finding no module of ours fixes.
	baseTool = scan.Finding{ID: "CVE-2022-41723", Severity: scan.SeverityHigh, PkgName: "golang.org/x/net", PkgType: "gobinary", PkgPath: "usr/bin/tool", InstalledVersion: "v0.6.0", FixedVersion: "0.7.0"}
)

// outdatedFixture is an in-memory registry with a base tag and an app
// image built on it, and the fake scanner's findings.
type outdatedFixture struct {
	t       *testing.T
	host    string
	baseTag name.Tag
	app     name.Tag
	scanner *imageScanner
}

func newOutdatedFixture(t *testing.T) *outdatedFixture {
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	f := &outdatedFixture{t: t, host: host, scanner: &imageScanner{findings: map[v1.Hash][]scan.Finding{}, unjudged: map[v1.Hash][]scan.Unjudged{}}}
	f.baseTag, _ = name.NewTag(host + "/bases/debian:12")
	f.app, _ = name.NewTag(host + "/team/hello:latest")
	return f
}

func platformImage(t *testing.T, p v1.Platform, mt types.MediaType) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(mutate.MediaType(img, mt), cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushBase pushes a two-platform base index to the base tag, each
// platform with the findings given, and returns its platform images.
func (f *outdatedFixture) pushBase(amdFindings, armFindings []scan.Finding) map[string]v1.Image {
	t := f.t
	out := map[string]v1.Image{}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pf := range []struct {
		p  v1.Platform
		fs []scan.Finding
	}{{amd64, amdFindings}, {arm64, armFindings}} {
		img := platformImage(t, pf.p, types.OCIManifestSchema1)
		d, _ := img.Digest()
		f.scanner.findings[d] = pf.fs
		out[build.PlatformString(pf.p)] = img
		p := pf.p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(f.baseTag, idx); err != nil {
		t.Fatal(err)
	}
	return out
}

// pushApp pushes an app index on the base's platform images, annotated
// as slipway does (unless docker: Docker media types, no annotations).
// appFindings are added to each platform's base findings.
func (f *outdatedFixture) pushApp(bases map[string]v1.Image, appFindings []scan.Finding, docker bool) {
	t := f.t
	desc, err := remote.Get(f.baseTag)
	if err != nil {
		t.Fatal(err)
	}
	idxMT, imgMT := types.OCIImageIndex, types.OCIManifestSchema1
	if docker {
		idxMT, imgMT = types.DockerManifestList, types.DockerManifestSchema2
	}
	idx := mutate.IndexMediaType(empty.Index, idxMT)
	for _, p := range []v1.Platform{amd64, arm64} {
		base := bases[build.PlatformString(p)]
		bd, _ := base.Digest()
		l, _ := random.Layer(128, types.OCILayer)
		img, err := mutate.AppendLayers(mutate.MediaType(base, imgMT), l)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.Config.Entrypoint = []string{"/app/hello"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		if !docker {
			img = mutate.Annotations(img, map[string]string{build.AnnotationBaseName: f.baseTag.Name(), build.AnnotationBaseDigest: bd.String()}).(v1.Image)
		}
		d, _ := img.Digest()
		f.scanner.findings[d] = append(append([]scan.Finding(nil), f.scanner.findings[bd]...), appFindings...)
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if !docker {
		idx = mutate.Annotations(idx, map[string]string{build.AnnotationCreated: "2026-12-01T00:00:00Z",
			build.AnnotationBaseName: f.baseTag.Name(), build.AnnotationBaseDigest: desc.Digest.String()}).(v1.ImageIndex)
	}
	if err := remote.WriteIndex(f.app, idx); err != nil {
		t.Fatal(err)
	}
}

func (f *outdatedFixture) run(base string, o pipeline.OutdatedOptions, pol scan.Policy) (*pipeline.OutdatedTarget, error) {
	f.t.Helper()
	jobs := []pipeline.OutdatedJob{{Target: "hello", Image: f.app, ImageSource: pipeline.ImageFromConfig, BaseRef: base}}
	res, err := pipeline.Outdated(context.Background(), jobs, pipeline.OutdatedStages{Scanner: f.scanner, Policy: pol}, o)
	if res == nil || len(res.Targets) != 1 {
		f.t.Fatalf("results: %+v (%v)", res, err)
	}
	if res.RebuildDue != res.Targets[0].RebuildDue {
		f.t.Errorf("results rebuild_due %v, target's %v", res.RebuildDue, res.Targets[0].RebuildDue)
	}
	return &res.Targets[0], err
}

// fixes summarises findings as "ID fix platforms [upgrade]".
func fixes(fs []pipeline.OutdatedFinding) []string {
	var out []string
	for _, f := range fs {
		s := f.ID + " " + f.Fix + " " + strings.Join(f.Platforms, ",")
		if f.Upgrade != "" {
			s += " " + f.Upgrade
		}
		out = append(out, s)
	}
	return out
}

func TestOutdatedBaseMoves(t *testing.T) {
	f := newOutdatedFixture(t)
	b1 := f.pushBase([]scan.Finding{glibc, apt, baseTool}, []scan.Finding{glibc, apt, baseTool})
	f.pushApp(b1, []scan.Finding{xtext, stdlib}, false)
	base := f.baseTag.String()

	// Base unchanged: up to date; the module findings are reported, and
	// the base was not scanned again.
	tr, err := f.run(base, pipeline.OutdatedOptions{}, scan.Policy{})
	if err != nil || tr.RebuildDue || tr.Base.Moved || tr.Base.Changed {
		t.Fatalf("unchanged base: err %v, due %v, base %+v", err, tr.RebuildDue, tr.Base)
	}
	want := []string{
		"CVE-2024-24790 module linux/amd64,linux/arm64/v8 1.22.4",
		"CVE-2022-32149 module linux/amd64,linux/arm64/v8 v0.3.8",
		"CVE-2022-41723 none linux/amd64,linux/arm64/v8",
		"CVE-2023-4911 none linux/amd64,linux/arm64/v8",
		"CVE-2011-3374 none linux/amd64,linux/arm64/v8",
	}
	if d := cmp.Diff(want, fixes(tr.Findings)); d != "" {
		t.Fatalf("findings (-want +got):\n%s", d)
	}
	wantUp := []pipeline.ModuleUpdate{
		{Module: "golang.org/x/text", From: "v0.3.7", To: "v0.3.8", Findings: []string{"CVE-2022-32149"}},
		{Module: "stdlib", From: "v1.22.1", To: "1.22.4", Findings: []string{"CVE-2024-24790"}},
	}
	if d := cmp.Diff(wantUp, tr.ModuleUpdates); d != "" {
		t.Fatalf("module updates (-want +got):\n%s", d)
	}
	if len(f.scanner.scanned) != 2 {
		t.Fatalf("scanned %d images, want the pushed image's 2 platforms only", len(f.scanner.scanned))
	}
	for _, p := range tr.Platforms {
		if p.BaseMoved || p.BaseRecordedDigest == "" || p.BaseRecordedDigest != p.BaseCurrentDigest {
			t.Fatalf("platform %+v", p)
		}
	}

	// --modules: the module fixes make it due.
	tr, err = f.run(base, pipeline.OutdatedOptions{Modules: true}, scan.Policy{})
	var rd *pipeline.RebuildDue
	if !errors.As(err, &rd) || !tr.RebuildDue || !strings.Contains(err.Error(), "golang.org/x/text@v0.3.8") {
		t.Fatalf("--modules: want RebuildDue naming the module, got %v (due %v)", err, tr.RebuildDue)
	}
	// … unless only severities they do not have count.
	if tr, err = f.run(base, pipeline.OutdatedOptions{Modules: true}, scan.Policy{Severities: []scan.Severity{"LOW"}}); err != nil || tr.RebuildDue {
		t.Fatalf("--modules, severity LOW: err %v, due %v", err, tr.RebuildDue)
	}

	// The module fixes with ignore_unfixed: they have fixed versions.
	if _, err = f.run(base, pipeline.OutdatedOptions{Modules: true}, scan.Policy{IgnoreUnfixed: true}); !errors.As(err, &rd) {
		t.Fatalf("--modules, ignore_unfixed: want RebuildDue, got %v", err)
	}
	// … nor when the ignore file suppresses them: listed, marked.
	ig, err := scan.ParseIgnoreFile([]byte("vulnerabilities:\n  - id: CVE-2022-32149\n  - id: CVE-2024-24790\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err = f.run(base, pipeline.OutdatedOptions{Modules: true}, scan.Policy{Ignore: ig})
	if err != nil || tr.RebuildDue {
		t.Fatalf("--modules, module findings suppressed: err %v, due %v", err, tr.RebuildDue)
	}
	for _, fd := range tr.Findings {
		if fd.Suppressed != (fd.Fix == pipeline.FixModule) {
			t.Fatalf("suppressed %v for %s (%s)", fd.Suppressed, fd.ID, fd.Fix)
		}
	}

	// The base tag moves: glibc fixed on amd64 only, the base's own Go
	// tool unchanged.
	b2 := f.pushBase([]scan.Finding{apt, baseTool}, []scan.Finding{glibc, apt, baseTool})
	tr, err = f.run(base, pipeline.OutdatedOptions{}, scan.Policy{})
	if !errors.As(err, &rd) || !tr.RebuildDue || !tr.Base.Moved || tr.Base.Changed {
		t.Fatalf("moved base: want RebuildDue, got %v (base %+v)", err, tr.Base)
	}
	want = []string{
		"CVE-2023-4911 rebuild linux/amd64",
		"CVE-2024-24790 module linux/amd64,linux/arm64/v8 1.22.4",
		"CVE-2022-32149 module linux/amd64,linux/arm64/v8 v0.3.8",
		"CVE-2022-41723 none linux/amd64,linux/arm64/v8",
		"CVE-2023-4911 none linux/arm64/v8",
		"CVE-2011-3374 none linux/amd64,linux/arm64/v8",
	}
	if d := cmp.Diff(want, fixes(tr.Findings)); d != "" {
		t.Fatalf("findings (-want +got):\n%s", d)
	}
	for _, p := range tr.Platforms {
		cur, _ := b2[p.Platform].Digest()
		if !p.BaseMoved || p.BaseCurrentDigest != cur.String() {
			t.Fatalf("platform %+v, want moved to %s", p, cur)
		}
	}
	if !strings.Contains(err.Error(), "base moved") || !strings.Contains(err.Error(), "1 finding fixed by a rebuild") {
		t.Fatalf("error %q does not say why", err)
	}

	// slipway.yaml names another base: due, whatever the tag does.
	other, _ := name.NewTag(f.host + "/bases/other:1")
	idx, _ := remote.Index(f.baseTag)
	if err := remote.WriteIndex(other, idx); err != nil {
		t.Fatal(err)
	}
	tr, err = f.run(other.String(), pipeline.OutdatedOptions{}, scan.Policy{})
	if !errors.As(err, &rd) || !tr.Base.Changed || !strings.Contains(err.Error(), "base changed") {
		t.Fatalf("other base: want RebuildDue for a changed base, got %v (base %+v)", err, tr.Base)
	}
}

// TestOutdatedDockerMediaTypes: without annotations, the base is compared
// by layers: the image is on the base's current image when its layers come
// first.
func TestOutdatedDockerMediaTypes(t *testing.T) {
	f := newOutdatedFixture(t)
	b1 := f.pushBase([]scan.Finding{glibc}, []scan.Finding{glibc})
	f.pushApp(b1, nil, true)
	tr, err := f.run(f.baseTag.String(), pipeline.OutdatedOptions{}, scan.Policy{})
	if err != nil || tr.RebuildDue || tr.Base.RecordedDigest != "" {
		t.Fatalf("same base: err %v, due %v, base %+v", err, tr.RebuildDue, tr.Base)
	}
	f.pushBase(nil, []scan.Finding{glibc})
	tr, err = f.run(f.baseTag.String(), pipeline.OutdatedOptions{}, scan.Policy{})
	var rd *pipeline.RebuildDue
	if !errors.As(err, &rd) || !tr.Base.Moved {
		t.Fatalf("moved base: want RebuildDue, got %v (base %+v)", err, tr.Base)
	}
	if d := cmp.Diff([]string{"CVE-2023-4911 rebuild linux/amd64", "CVE-2023-4911 none linux/arm64/v8"}, fixes(tr.Findings)); d != "" {
		t.Fatalf("findings (-want +got):\n%s", d)
	}
}

// TestOutdatedScratch: on scratch there is no base digest; only module
// findings apply.
func TestOutdatedScratch(t *testing.T) {
	f := newOutdatedFixture(t)
	img := platformImage(t, amd64, types.OCIManifestSchema1)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{"/app/hello"}
	img, _ = mutate.ConfigFile(img, cf)
	d, _ := img.Digest()
	f.scanner.findings[d] = []scan.Finding{xtext}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &amd64}})
	idx = mutate.Annotations(idx, map[string]string{build.AnnotationCreated: "2026-12-01T00:00:00Z"}).(v1.ImageIndex)
	if err := remote.WriteIndex(f.app, idx); err != nil {
		t.Fatal(err)
	}
	tr, err := f.run(build.Scratch, pipeline.OutdatedOptions{}, scan.Policy{})
	if err != nil || tr.RebuildDue || !tr.Base.Scratch || tr.Base.CurrentDigest != "" {
		t.Fatalf("scratch: err %v, due %v, base %+v", err, tr.RebuildDue, tr.Base)
	}
	if !strings.Contains(strings.Join(tr.Reasons, "\n"), "scratch") {
		t.Fatalf("reasons do not say scratch: %q", tr.Reasons)
	}
	if d := cmp.Diff([]string{"CVE-2022-32149 module linux/amd64 v0.3.8"}, fixes(tr.Findings)); d != "" {
		t.Fatalf("findings (-want +got):\n%s", d)
	}
	// Configured on a base now, built on scratch: due.
	f.pushBase(nil, nil)
	tr, err = f.run(f.baseTag.String(), pipeline.OutdatedOptions{}, scan.Policy{})
	var rd *pipeline.RebuildDue
	if !errors.As(err, &rd) || !tr.Base.Changed {
		t.Fatalf("scratch → base: want RebuildDue for a changed base, got %v (base %+v)", err, tr.Base)
	}
}

// TestOutdatedCannotJudge: a missing image, a missing DB, or a base whose
// current image the scanner cannot judge are errors, never "up to date"
// or "due".
func TestOutdatedCannotJudge(t *testing.T) {
	f := newOutdatedFixture(t)
	b1 := f.pushBase([]scan.Finding{glibc}, []scan.Finding{glibc})
	f.pushApp(b1, nil, false)

	missing, _ := name.NewTag(f.host + "/team/nothing:latest")
	jobs := []pipeline.OutdatedJob{{Target: "hello", Image: missing, BaseRef: f.baseTag.String()}}
	res, err := pipeline.Outdated(context.Background(), jobs, pipeline.OutdatedStages{Scanner: f.scanner}, pipeline.OutdatedOptions{})
	var rd *pipeline.RebuildDue
	if err == nil || errors.As(err, &rd) || res.Targets[0].Error == "" || !strings.Contains(err.Error(), "checking hello") {
		t.Fatalf("missing image: want an error naming the target, got %v", err)
	}

	bases := f.pushBase(nil, nil)
	for _, img := range bases {
		d, _ := img.Digest()
		f.scanner.unjudged[d] = []scan.Unjudged{{Reason: scan.UnjudgedNoPackageDB, Detail: "no package DB"}}
	}
	_, err = f.run(f.baseTag.String(), pipeline.OutdatedOptions{}, scan.Policy{})
	var cj *scan.CannotJudgeError
	if !errors.As(err, &cj) || errors.As(err, &rd) {
		t.Fatalf("unjudged new base: want cannot judge, got %v", err)
	}
	// Allowed, as the gate allows it.
	if _, err = f.run(f.baseTag.String(), pipeline.OutdatedOptions{}, scan.Policy{AllowUnjudged: []string{scan.UnjudgedNoPackageDB}}); !errors.As(err, &rd) {
		t.Fatalf("allowed unjudged: want RebuildDue, got %v", err)
	}

	dbErr := errors.New("vulnerability DB missing")
	_, err = pipeline.Outdated(context.Background(), jobs, pipeline.OutdatedStages{Scanner: &dbless{dbErr}}, pipeline.OutdatedOptions{})
	if !errors.Is(err, dbErr) {
		t.Fatalf("no DB: got %v", err)
	}
}

type dbless struct{ err error }

func (d *dbless) DBIdentity() (string, error)                               { return "", d.err }
func (d *dbless) Scan(context.Context, v1.ImageIndex) (*scan.Report, error) { return nil, d.err }

func TestOutdatedJobs(t *testing.T) {
	c := &pipeline.Config{Repository: "registry.example.com/team", Targets: []pipeline.Target{
		{Name: "a", Tags: []string{"{{.Git.ShortCommit}}", "latest"}},
		{Name: "b", Tags: []string{"{{.Git.ShortCommit}}"}},
		{Name: "c"},
	}}
	repo := func(n string) name.Repository { r, _ := name.NewRepository("registry.example.com/team/" + n); return r }
	jobs := []pipeline.Job{
		{Target: build.Target{Name: "a"}, Tags: []string{"abc1234", "latest"}, Repository: repo("a"), BaseRef: "debian:12"},
		{Target: build.Target{Name: "b"}, Tags: []string{"abc1234"}, Repository: repo("b")},
		{Target: build.Target{Name: "c"}, Tags: []string{"latest"}, Repository: repo("c")},
	}
	dig := "@sha256:" + strings.Repeat("a", 64)
	results := map[string]string{
		"a": "registry.example.com/team/a" + dig,
		"b": "registry.example.com/elsewhere/b" + dig, // pushed elsewhere before: not this config's
	}
	got, err := pipeline.OutdatedJobs(c, jobs, map[string]string{"c": "other.example.com/c:v1"}, results, nil)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, j := range got {
		summary = append(summary, j.Target+" "+j.ImageSource+" "+j.Image.String()+" "+j.BaseRef)
	}
	want := []string{
		"a results registry.example.com/team/a" + dig + " debian:12",
		"b config registry.example.com/team/b:abc1234 ",
		"c flag other.example.com/c:v1 ",
	}
	if d := cmp.Diff(want, summary); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	// Without results, a's stable tag, not the commit's.
	got, _ = pipeline.OutdatedJobs(c, jobs[:1], nil, nil, nil)
	if s := got[0].Image.String(); s != "registry.example.com/team/a:latest" {
		t.Fatalf("a without results: %s", s)
	}
	// No repository and nothing else: a config error.
	jobs[2].Repository = name.Repository{}
	var ce *pipeline.ConfigError
	if _, err := pipeline.OutdatedJobs(c, jobs[2:], nil, nil, nil); !errors.As(err, &ce) {
		t.Fatalf("no repository: want a config error, got %v", err)
	}
	if _, err := pipeline.OutdatedJobs(c, jobs[2:], map[string]string{"c": "Not A Ref"}, nil, nil); !errors.As(err, &ce) || ce.Key != "--image" {
		t.Fatalf("bad --image: want a config error naming --image, got %v", err)
	}
}
