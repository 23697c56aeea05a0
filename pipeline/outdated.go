package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/mod/semver"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/scan"
)

// What fixes a finding of a pushed image (OutdatedFinding.Fix).
const (
	// FixRebuild: the finding is in the base image and absent from the
	// image its base tag names now: `slipway run --push` fixes it.
	FixRebuild = "rebuild"
	// FixModule: the finding is in a Go module (or the standard library)
	// of the target's binary and a newer version fixes it: a code change
	// (go get module@version, or a newer Go toolchain for stdlib).
	FixModule = "module"
	// FixNone: neither a rebuild nor a newer module fixes it (yet).
	FixNone = "none"
)

// Where an OutdatedJob's image reference came from.
const (
	ImageFromFlag    = "flag"    // --image
	ImageFromResults = "results" // the results file of the last push
	ImageFromConfig  = "config"  // the target's repository and tag
)

// OutdatedJob is one target whose pushed image Outdated checks.
type OutdatedJob struct {
	// Target is the target's name.
	Target string
	// Image is the pushed image, by tag or digest.
	Image name.Reference
	// ImageSource is ImageFromFlag, ImageFromResults or ImageFromConfig.
	ImageSource string
	// BaseRef is the base as configured: "scratch", a reference or oci:DIR
	// (OutdatedStages.ResolveBase resolves it as a build would).
	BaseRef string
}

// OutdatedStages are what Outdated reads and scans with.
type OutdatedStages struct {
	// Remote are the options of reads of the pushed images.
	Remote []remote.Option
	// ResolveBase resolves a target's base as a build would; nil:
	// build.ResolveBase without options.
	ResolveBase BaseResolver
	// Scanner scans the pushed images and the bases' current images; it
	// fails, as in a run, when it cannot scan (missing or stale DB).
	Scanner scan.Scanner
	// Policy is the scan gate's: its ignore file marks findings
	// suppressed, its AllowUnjudged says what may go unjudged, and its
	// severities (default HIGH, CRITICAL) and IgnoreUnfixed say which
	// unsuppressed findings make a rebuild or a module update due.
	Policy scan.Policy
}

// OutdatedOptions tune Outdated.
type OutdatedOptions struct {
	// Modules makes a finding fixed by a newer module make the target due
	// (RebuildDue), as a rebuild on a moved base does. Default: such
	// findings are reported only, since a rebuild alone does not fix them.
	Modules bool
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// OutdatedResults are Outdated's findings, for machines (snake_case JSON,
// as Results) and for the table.
type OutdatedResults struct {
	Targets []OutdatedTarget `json:"targets"`
	// RebuildDue is set when any target is due.
	RebuildDue bool `json:"rebuild_due"`
}

// OutdatedTarget is what Outdated found about one target.
type OutdatedTarget struct {
	Target string `json:"target"`
	// Image is the image checked, repo@sha256:… (the index digest).
	Image string `json:"image,omitempty"`
	// ImageSource is where the reference came from (flag, results or
	// config), ImageRef the reference as asked for (a tag, or a digest).
	ImageSource string       `json:"image_source,omitempty"`
	ImageRef    string       `json:"image_ref,omitempty"`
	Base        OutdatedBase `json:"base"`
	// Platforms are the pushed image's platforms.
	Platforms []OutdatedPlatform `json:"platforms,omitempty"`
	// Findings are every finding of the pushed image, scanned with
	// today's DB, each with what fixes it (per platform: a finding whose
	// fix differs between platforms is listed once per fix).
	Findings []OutdatedFinding `json:"findings,omitempty"`
	// ModuleUpdates are the module versions to go to, one per module.
	ModuleUpdates []ModuleUpdate `json:"module_updates,omitempty"`
	// DBUpdatedAt is the UpdatedAt of the DB the scans used.
	DBUpdatedAt time.Time `json:"db_updated_at,omitzero"`
	// RebuildDue: the base moved or changed, or a rebuild fixes a counted
	// finding, or (with OutdatedOptions.Modules) a newer module does.
	RebuildDue bool `json:"rebuild_due"`
	// Reasons say why RebuildDue is set, and what else was found.
	Reasons []string `json:"reasons,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// OutdatedBase compares the base recorded in the pushed image with what
// the configured base names now.
type OutdatedBase struct {
	// Name is the base as configured.
	Name string `json:"name"`
	// Scratch: the target is configured on scratch (nothing to update).
	Scratch bool `json:"scratch,omitempty"`
	// RecordedName and RecordedDigest are the pushed index's
	// org.opencontainers.image.base.{name,digest} (empty on scratch, and
	// on Docker media types, which have no annotations).
	RecordedName   string `json:"recorded_name,omitempty"`
	RecordedDigest string `json:"recorded_digest,omitempty"`
	// CurrentDigest is what the configured base names now.
	CurrentDigest string `json:"current_digest,omitempty"`
	// Moved: the base tag names another image than the one recorded.
	Moved bool `json:"moved"`
	// Changed: slipway.yaml names another base than the image was built on.
	Changed bool `json:"changed,omitempty"`
}

// OutdatedPlatform is one platform of the pushed image.
type OutdatedPlatform struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	// BaseRecordedDigest is the manifest's org.opencontainers.image.base.digest.
	BaseRecordedDigest string `json:"base_recorded_digest,omitempty"`
	// BaseCurrentDigest is the base's image for the platform now.
	BaseCurrentDigest string `json:"base_current_digest,omitempty"`
	// BaseMoved: the platform's base image is another one now (by digest,
	// or, without the annotation, because its layers are no longer the
	// first layers of the pushed image).
	BaseMoved bool `json:"base_moved"`
}

// OutdatedFinding is a finding of the pushed image and what fixes it.
type OutdatedFinding struct {
	ID               string   `json:"id"`
	Severity         string   `json:"severity"`
	PkgName          string   `json:"pkg_name"`
	PkgType          string   `json:"pkg_type"`
	PkgPath          string   `json:"pkg_path,omitempty"`
	InstalledVersion string   `json:"installed_version"`
	FixedVersion     string   `json:"fixed_version,omitempty"`
	Title            string   `json:"title,omitempty"`
	Platforms        []string `json:"platforms"`
	// Fix is FixRebuild, FixModule or FixNone.
	Fix string `json:"fix"`
	// Upgrade, for FixModule, is the lowest fixed version above the
	// installed one ("v0.3.8"; for stdlib, a Go version).
	Upgrade string `json:"upgrade,omitempty"`
	// Suppressed: the ignore file suppresses it; it is listed, and never
	// makes a target due.
	Suppressed bool `json:"suppressed,omitempty"`
}

// ModuleUpdate is a module of a target's binary to update, to the lowest
// version that fixes every finding of it.
type ModuleUpdate struct {
	// Module is the module path, or "stdlib" (the Go toolchain).
	Module   string   `json:"module"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Findings []string `json:"findings"`
}

// RebuildDue is Outdated's verdict when targets need a rebuild (or, with
// OutdatedOptions.Modules, a module update); cmd/ maps it to exit 3.
type RebuildDue struct {
	// Targets are the names of the targets due, with their reasons.
	Targets []string
	Reasons map[string][]string
}

// Error names each target due and why.
func (e *RebuildDue) Error() string {
	parts := make([]string, 0, len(e.Targets))
	for _, t := range e.Targets {
		parts = append(parts, t+" ("+strings.Join(e.Reasons[t], "; ")+")")
	}
	return "rebuild due: " + strings.Join(parts, ", ")
}

// Outdated checks, for each job, whether the image pushed for it is
// behind: whether its base tag now names another image than the one
// recorded in the image, and which of the image's findings (scanned now,
// with today's DB) a rebuild on the base's current image or a newer Go
// module would fix. The results describe every job (none when the
// scanner's DB is unusable: nothing is read then). The error is
// the join of every job's failure (a job that cannot be judged is never up
// to date); with none, a *RebuildDue when any job is due; else nil.
func Outdated(ctx context.Context, jobs []OutdatedJob, st OutdatedStages, o OutdatedOptions) (*OutdatedResults, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if st.Scanner == nil {
		return nil, errors.New("outdated: no scanner")
	}
	resolve := st.ResolveBase
	if resolve == nil {
		resolve = func(ctx context.Context, ref string) (*build.Base, error) { return build.ResolveBase(ctx, ref) }
	}
	// Fail fast on a missing or stale DB, before any registry read.
	if id, ok := st.Scanner.(scan.DBIdentifier); ok {
		if _, err := id.DBIdentity(); err != nil {
			return &OutdatedResults{}, fmt.Errorf("scanner: %w", err)
		}
	}
	res := &OutdatedResults{Targets: make([]OutdatedTarget, len(jobs))}
	bases := map[string]*build.Base{}
	var errs []error
	due := &RebuildDue{Reasons: map[string][]string{}}
	for i, j := range jobs {
		tr := &res.Targets[i]
		tr.Target, tr.ImageSource = j.Target, j.ImageSource
		tr.Base.Name = cmp.Or(j.BaseRef, build.Scratch)
		if j.Image != nil {
			tr.ImageRef = j.Image.String()
		}
		reasons, err := checkOutdated(ctx, j, st, resolve, bases, o, tr, log)
		if err != nil {
			err = fmt.Errorf("checking %s: %w", j.Target, err)
			tr.Error = err.Error()
			errs = append(errs, err)
			continue
		}
		if tr.RebuildDue {
			res.RebuildDue = true
			due.Targets = append(due.Targets, j.Target)
			due.Reasons[j.Target] = reasons
		}
		log.Info("checked", "target", j.Target, "image", tr.Image, "rebuild_due", tr.RebuildDue)
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if len(due.Targets) > 0 {
		return res, due
	}
	return res, nil
}

// OutdatedJobs picks the image to check for each planned job: images[target]
// (--image), else results[target] (the pushed reference in the results
// file of the last run) when it is in the job's repository, else the
// job's repository with its first tag that is not a template (a stable tag
// such as latest), else its first tag. A reference is reached over plain
// HTTP when insecure allows its host.
func OutdatedJobs(c *Config, jobs []Job, images, results map[string]string, insecure func(host string) bool) ([]OutdatedJob, error) {
	out := make([]OutdatedJob, 0, len(jobs))
	for _, j := range jobs {
		name := j.Target.Name
		oj := OutdatedJob{Target: name, BaseRef: j.BaseRef}
		switch {
		case images[name] != "":
			r, err := parseImageRef(images[name], insecure)
			if err != nil {
				return nil, &ConfigError{Key: "--image", Msg: fmt.Sprintf("%s: %v", name, err)}
			}
			oj.Image, oj.ImageSource = r, ImageFromFlag
		case results[name] != "" && (j.Repository.RepositoryStr() == "" || sameRepository(results[name], j.Repository)):
			r, err := parseImageRef(results[name], insecure)
			if err != nil {
				return nil, fmt.Errorf("results of the last run: %s: %w", name, err)
			}
			oj.Image, oj.ImageSource = r, ImageFromResults
		case j.Repository.RepositoryStr() != "" && len(j.Tags) > 0:
			tag := j.Tags[0]
			for _, t := range c.Targets {
				if t.Name != name {
					continue
				}
				for _, tmpl := range t.Tags {
					if !strings.Contains(tmpl, "{{") && slices.Contains(j.Tags, tmpl) {
						tag = tmpl
						break
					}
				}
			}
			oj.Image, oj.ImageSource = j.Repository.Tag(tag), ImageFromConfig
		default:
			return nil, &ConfigError{Key: "repository", Msg: fmt.Sprintf("no pushed image known for target %s: set repository (or the target's repository and tags), push it with slipway run --push, or name it with --image", name)}
		}
		out = append(out, oj)
	}
	return out, nil
}

func parseImageRef(s string, insecure func(host string) bool) (name.Reference, error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	if insecure != nil && insecure(r.Context().RegistryStr()) {
		return name.ParseReference(s, name.Insecure)
	}
	return r, nil
}

func sameRepository(ref string, repo name.Repository) bool {
	r, err := name.ParseReference(ref)
	return err == nil && r.Context().Name() == repo.Name()
}

// pushedPlatform is one platform image of a pushed index.
type pushedPlatform struct {
	platform v1.Platform
	name     string
	digest   v1.Hash
	img      v1.Image
	// baseDigest is the manifest's base digest annotation.
	baseDigest string
	// app is the target's binary in the image (the entrypoint, without
	// the leading slash), "" when unknown.
	app string
}

// platformBase is what Outdated knows of one platform's base.
type platformBase struct {
	moved bool
	// current holds the findings of the base's current image for the
	// platform, by id and package; nil when the base did not move (or
	// there is none): then a rebuild fixes nothing of it.
	current map[baseKey]bool
	app     string
}

type baseKey struct{ id, pkg string }

func checkOutdated(ctx context.Context, j OutdatedJob, st OutdatedStages, resolve BaseResolver, bases map[string]*build.Base,
	o OutdatedOptions, tr *OutdatedTarget, log *slog.Logger) ([]string, error) {
	if j.Image == nil {
		return nil, errors.New("no image to check")
	}
	ropts := append([]remote.Option{remote.WithContext(ctx)}, st.Remote...)
	desc, err := remote.Get(j.Image, ropts...)
	if err != nil {
		return nil, fmt.Errorf("reading pushed image %s: %w", j.Image, err)
	}
	tr.Image = j.Image.Context().Name() + "@" + desc.Digest.String()
	idx, recorded, err := pushedIndex(desc)
	if err != nil {
		return nil, fmt.Errorf("reading pushed image %s: %w", tr.Image, err)
	}
	plats, err := pushedPlatforms(idx)
	if err != nil {
		return nil, fmt.Errorf("reading pushed image %s: %w", tr.Image, err)
	}
	tr.Base.RecordedName = recorded[build.AnnotationBaseName]
	tr.Base.RecordedDigest = recorded[build.AnnotationBaseDigest]
	// slipway annotates every OCI index it builds (created, and the base
	// unless scratch); Docker media types carry no annotations.
	annotated := recorded[build.AnnotationCreated] != "" || tr.Base.RecordedDigest != ""

	// The base: what the configured name names now.
	baseRef := cmp.Or(j.BaseRef, build.Scratch)
	base, ok := bases[baseRef]
	if !ok {
		if base, err = resolve(ctx, baseRef); err != nil {
			return nil, err
		}
		bases[baseRef] = base
	}
	tr.Base.Scratch = base.IsScratch()
	if base.IsScratch() {
		// Built on a base, configured on scratch now.
		tr.Base.Changed = tr.Base.RecordedDigest != ""
	} else {
		tr.Base.CurrentDigest = base.Digest.String()
		if annotated {
			// An annotated index without a base was built on scratch.
			tr.Base.Changed = tr.Base.RecordedName != base.Ref
			tr.Base.Moved = !tr.Base.Changed && tr.Base.RecordedDigest != tr.Base.CurrentDigest
		}
	}

	pbs := map[string]*platformBase{}
	for _, p := range plats {
		op := OutdatedPlatform{Platform: p.name, Digest: p.digest.String(), BaseRecordedDigest: p.baseDigest}
		pb := &platformBase{app: p.app}
		pbs[p.name] = pb
		if !base.IsScratch() {
			bimg, bdig, err := base.Image(p.platform)
			if err != nil {
				return nil, fmt.Errorf("base %s now: %w", base.Name, err)
			}
			op.BaseCurrentDigest = bdig
			switch {
			case tr.Base.Changed:
				pb.moved = true
			case p.baseDigest != "":
				pb.moved = p.baseDigest != bdig
			default:
				// No annotation (Docker media types): the image is on the
				// base's current image when that image's layers come first.
				prefix, err := layersPrefix(bimg, p.img)
				if err != nil {
					return nil, fmt.Errorf("comparing %s with base %s: %w", p.name, base.Name, err)
				}
				pb.moved = !prefix
				if pb.moved && !annotated {
					tr.Base.Moved = true
				}
			}
			if pb.moved {
				log.Info("scanning the base's current image", "target", j.Target, "base", base.Name, "platform", p.name, "digest", bdig)
				if pb.current, err = scanBase(ctx, st.Scanner, st.Policy, bimg, p); err != nil {
					return nil, fmt.Errorf("base %s now (%s): %w", base.Name, p.name, err)
				}
			}
		}
		op.BaseMoved = pb.moved
		tr.Platforms = append(tr.Platforms, op)
	}

	// The pushed image, with today's DB.
	log.Info("scanning the pushed image", "target", j.Target, "image", tr.Image)
	rep, err := st.Scanner.Scan(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", tr.Image, err)
	}
	if err := judged(rep, st.Policy); err != nil {
		return nil, fmt.Errorf("scanning %s: %w", tr.Image, err)
	}
	tr.DBUpdatedAt = rep.DB.UpdatedAt
	tr.Findings = classify(rep, pbs)
	tr.ModuleUpdates = moduleUpdates(tr.Findings)
	return decide(tr, st.Policy, o.Modules)
}

// pushedIndex is the pushed image as an index (a single image is wrapped
// in one) and the annotations of its top manifest (nil for Docker media
// types).
func pushedIndex(desc *remote.Descriptor) (v1.ImageIndex, map[string]string, error) {
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, nil, err
		}
		return idx, im.Annotations, nil
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, nil, err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, nil, err
		}
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
			mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}})
		return idx, m.Annotations, nil
	}
	return nil, nil, fmt.Errorf("media type %q is neither an image nor an index", desc.MediaType)
}

// pushedPlatforms lists the platform images of idx (attestation manifests
// and nested indexes skipped), with their base annotation and binary.
func pushedPlatforms(idx v1.ImageIndex) ([]pushedPlatform, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []pushedPlatform
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() || d.Platform != nil && d.Platform.OS == "unknown" ||
			d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", d.Digest, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", d.Digest, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading the config of %s: %w", d.Digest, err)
		}
		p := d.Platform
		if p == nil || p.OS == "" {
			p = cf.Platform()
		}
		if p == nil {
			return nil, fmt.Errorf("%s names no platform", d.Digest)
		}
		pp := pushedPlatform{platform: *p, name: build.PlatformString(*p), digest: d.Digest, img: img,
			baseDigest: m.Annotations[build.AnnotationBaseDigest]}
		if ep := cf.Config.Entrypoint; len(ep) > 0 {
			pp.app = strings.TrimLeft(path.Clean("/"+ep[0]), "/")
		}
		out = append(out, pp)
	}
	if len(out) == 0 {
		return nil, errors.New("no platform image")
	}
	return out, nil
}

// layersPrefix reports whether base's layers are the first layers of img.
func layersPrefix(base, img v1.Image) (bool, error) {
	bc, err := base.ConfigFile()
	if err != nil {
		return false, err
	}
	ic, err := img.ConfigFile()
	if err != nil {
		return false, err
	}
	b, i := bc.RootFS.DiffIDs, ic.RootFS.DiffIDs
	return len(b) <= len(i) && slices.Equal(b, i[:len(b)]), nil
}

// scanBase scans img, a base's current image for p, and returns its
// findings by id and package. What the scanner cannot judge of it (and
// the policy does not allow) fails: absent findings would then mean
// nothing.
func scanBase(ctx context.Context, s scan.Scanner, pol scan.Policy, img v1.Image, p pushedPlatform) (map[baseKey]bool, error) {
	plat := p.platform
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	rep, err := s.Scan(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("scanning: %w", err)
	}
	if err := judged(rep, scan.Policy{Severities: pol.Severities, AllowUnjudged: pol.AllowUnjudged}); err != nil {
		return nil, err
	}
	out := map[baseKey]bool{}
	for _, f := range rep.Findings {
		out[baseKey{f.ID, f.PkgName}] = true
	}
	return out, nil
}

// judged applies the gate's policy to rep for its side effects (the
// ignore file marks findings suppressed) and returns only what the
// scanner could not judge and the policy does not allow: outdated is no
// gate, but what cannot be judged cannot be up to date.
func judged(rep *scan.Report, pol scan.Policy) error {
	err := scan.Gate(rep, pol)
	var cj *scan.CannotJudgeError
	var pv *scan.PolicyViolation
	switch {
	case errors.As(err, &cj):
		return cj
	case err != nil && !errors.As(err, &pv):
		return err
	}
	return nil
}

// classify says, for each finding of rep and each of its platforms, what
// fixes it: a finding of the target's binary with a fixed version, a newer
// module; a finding of the base, a rebuild when the base moved on that
// platform and its current image lacks it. Findings whose fix differs by
// platform are split. The result is sorted: rebuild, module, none; then by
// severity (worst first), id and package.
func classify(rep *scan.Report, pbs map[string]*platformBase) []OutdatedFinding {
	var out []OutdatedFinding
	for _, f := range rep.Findings {
		byFix := map[string][]string{}
		var order []string
		for _, p := range f.Platforms {
			fix := fixOf(f, pbs[p])
			if _, ok := byFix[fix]; !ok {
				order = append(order, fix)
			}
			byFix[fix] = append(byFix[fix], p)
		}
		for _, fix := range order {
			of := OutdatedFinding{ID: f.ID, Severity: string(f.Severity), PkgName: f.PkgName, PkgType: f.PkgType, PkgPath: f.PkgPath,
				InstalledVersion: f.InstalledVersion, FixedVersion: f.FixedVersion, Title: f.Title, Platforms: byFix[fix],
				Fix: fix, Suppressed: f.Suppressed != nil}
			if fix == FixModule {
				of.Upgrade = upgradeTo(f.PkgName, f.InstalledVersion, f.FixedVersion)
			}
			out = append(out, of)
		}
	}
	rank := map[string]int{FixRebuild: 0, FixModule: 1, FixNone: 2}
	slices.SortStableFunc(out, func(a, b OutdatedFinding) int {
		return cmp.Or(cmp.Compare(rank[a.Fix], rank[b.Fix]),
			cmp.Compare(scan.Severity(b.Severity).Rank(), scan.Severity(a.Severity).Rank()),
			cmp.Compare(a.ID, b.ID), cmp.Compare(a.PkgName, b.PkgName), cmp.Compare(a.InstalledVersion, b.InstalledVersion))
	})
	return out
}

// goBinary is Trivy's package type of Go binaries' modules.
const goBinary = "gobinary"

func fixOf(f scan.Finding, pb *platformBase) string {
	if pb == nil {
		return FixNone
	}
	if inApp(f, pb.app) {
		if f.FixedVersion != "" {
			return FixModule
		}
		return FixNone
	}
	if pb.current != nil && !pb.current[baseKey{f.ID, f.PkgName}] {
		return FixRebuild
	}
	return FixNone
}

// inApp reports whether f is in the target's binary app (a Go module or
// the standard library of it). When the binary is unknown, every Go
// binary finding is taken for the target's: never claimed fixed by a
// rebuild.
func inApp(f scan.Finding, app string) bool {
	if f.PkgType != goBinary {
		return false
	}
	if app == "" {
		return true
	}
	return f.PkgPath == app || slices.Contains(f.PkgPaths, app)
}

// upgradeTo is the lowest of the fixed versions (Trivy lists one per
// release branch: "1.21.11, 1.22.4") above installed: "v0.3.8", or for
// the standard library a Go version ("1.22.4"). When none parses, the
// first fixed version as given.
func upgradeTo(module, installed, fixed string) string {
	cur := canonical(installed)
	var best string
	for _, c := range strings.Split(fixed, ",") {
		v := canonical(c)
		if v == "" || cur != "" && semver.Compare(v, cur) <= 0 {
			continue
		}
		if best == "" || semver.Compare(v, best) < 0 {
			best = v
		}
	}
	if best == "" {
		first, _, _ := strings.Cut(fixed, ",")
		return strings.TrimSpace(first)
	}
	if module == "stdlib" {
		return strings.TrimPrefix(best, "v")
	}
	return best
}

// canonical is v as a semantic version with its "v", or "".
func canonical(v string) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "go")
	if v == "" {
		return ""
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if !semver.IsValid(v) {
		return ""
	}
	return v
}

// moduleUpdates groups the module fixes by module: the version to go to
// is the highest upgrade any of its findings needs.
func moduleUpdates(fs []OutdatedFinding) []ModuleUpdate {
	var out []ModuleUpdate
	at := map[string]int{}
	for _, f := range fs {
		if f.Fix != FixModule {
			continue
		}
		i, ok := at[f.PkgName]
		if !ok {
			out = append(out, ModuleUpdate{Module: f.PkgName, From: f.InstalledVersion, To: f.Upgrade})
			i = len(out) - 1
			at[f.PkgName] = i
		}
		u := &out[i]
		if a, b := canonical(f.Upgrade), canonical(u.To); a != "" && b != "" && semver.Compare(a, b) > 0 {
			u.To = f.Upgrade
		}
		if !slices.Contains(u.Findings, f.ID) {
			u.Findings = append(u.Findings, f.ID)
		}
	}
	for i := range out {
		slices.Sort(out[i].Findings)
	}
	slices.SortFunc(out, func(a, b ModuleUpdate) int { return cmp.Compare(a.Module, b.Module) })
	return out
}

// decide sets tr.RebuildDue and tr.Reasons, and returns the reasons that
// make the target due. Findings count as the gate counts them: not
// suppressed, of a severity of the policy (default HIGH, CRITICAL), and,
// with IgnoreUnfixed, with a fixed version (a base package the current
// base dropped has none).
func decide(tr *OutdatedTarget, pol scan.Policy, modules bool) ([]string, error) {
	sevs := scan.DefaultSeverities
	if len(pol.Severities) > 0 {
		sevs = nil
		for _, s := range pol.Severities {
			sev, err := scan.ParseSeverity(string(s))
			if err != nil {
				return nil, err
			}
			sevs = append(sevs, sev)
		}
	}
	var rebuild, module, uncounted int
	for _, f := range tr.Findings {
		if f.Fix == FixNone {
			continue
		}
		if f.Suppressed || !slices.Contains(sevs, scan.Severity(f.Severity)) || pol.IgnoreUnfixed && f.FixedVersion == "" {
			uncounted++
			continue
		}
		switch f.Fix {
		case FixRebuild:
			rebuild++
		case FixModule:
			module++
		}
	}
	var due []string
	b := tr.Base
	switch {
	case b.Changed && b.Scratch:
		due = append(due, fmt.Sprintf("base changed: built on %s, slipway.yaml says scratch", b.RecordedName))
	case b.Changed:
		due = append(due, fmt.Sprintf("base changed: built on %s, slipway.yaml says %s", cmp.Or(b.RecordedName, build.Scratch), b.Name))
	case b.Moved && b.RecordedDigest != "":
		due = append(due, fmt.Sprintf("base moved: %s now names %s (image built on %s)", b.Name, b.CurrentDigest, b.RecordedDigest))
	case b.Moved:
		due = append(due, fmt.Sprintf("base moved: %s now names %s, whose layers the image does not start with", b.Name, b.CurrentDigest))
	}
	if rebuild > 0 {
		due = append(due, fmt.Sprintf("%d %s fixed by a rebuild on the current base", rebuild, plural(rebuild, "finding")))
	}
	moduleReason := ""
	if module > 0 {
		var ups []string
		for _, u := range tr.ModuleUpdates {
			ups = append(ups, u.Module+"@"+u.To)
		}
		moduleReason = fmt.Sprintf("%d %s fixed by newer modules (%s)", module, plural(module, "finding"), strings.Join(ups, ", "))
		if modules {
			due = append(due, moduleReason)
		}
	}
	tr.RebuildDue = len(due) > 0
	tr.Reasons = append(tr.Reasons, due...)
	if moduleReason != "" && !modules {
		tr.Reasons = append(tr.Reasons, moduleReason+": a code change, not a rebuild (--modules makes it due)")
	}
	if b.Scratch && !b.Changed {
		tr.Reasons = append(tr.Reasons, "on scratch: no base to update, only module findings apply")
	}
	if uncounted > 0 {
		tr.Reasons = append(tr.Reasons, fmt.Sprintf("%d fixable %s suppressed or below the severities that count", uncounted, plural(uncounted, "finding")))
	}
	return due, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
