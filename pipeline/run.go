package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/scan"
)

// BaseResolver resolves a base name to a Base (see build.ResolveBase).
type BaseResolver func(ctx context.Context, ref string) (*build.Base, error)

// BaseVerifier checks a resolved base before it is used (base_policy).
type BaseVerifier func(ctx context.Context, base *build.Base) error

// Signer signs a built index locally; nothing is written.
type Signer interface {
	// Sign computes signatures (and attestations) over the digests of res.
	Sign(ctx context.Context, job Job, res *build.Result, report *scan.Report) (Signatures, error)
}

// Signatures are computed signatures, ready to be written after the image.
type Signatures interface {
	// Refs names the signatures and attestations, for results.
	Refs() []string
	// WriteRemote writes them to repo (bundle referrers, cosign's .sig/.att
	// tags) with opts added to the signer's remote options (the
	// destination's session with repo); tr, when not nil, is that
	// session's authenticated transport, which writes with fewer requests.
	WriteRemote(ctx context.Context, repo name.Repository, tr http.RoundTripper, opts ...remote.Option) error
	// WriteLayout writes them into the OCI layout at dir.
	WriteLayout(dir string) error
}

// Destination receives a gated, signed image: the image first, then its
// signatures, then its tags.
type Destination interface {
	// WriteImage writes the index and everything under it, by digest.
	WriteImage(ctx context.Context, job Job, res *build.Result) (ref string, err error)
	// WriteSignatures writes sigs next to the image (sigs may be nil).
	WriteSignatures(ctx context.Context, job Job, res *build.Result, sigs Signatures) error
	// Tag points the job's tags at the image.
	Tag(ctx context.Context, job Job, res *build.Result) error
}

// Stages are the pipeline's steps; nil Scanner or Signer skips the stage,
// nil Destination builds (and gates) without writing anything.
type Stages struct {
	ResolveBase BaseResolver
	VerifyBase  BaseVerifier
	Builder     build.Builder
	Scanner     scan.Scanner
	Gate        scan.Policy
	Signer      Signer
	Destination Destination
}

// RunOptions tune Run.
type RunOptions struct {
	// ContinueOnFailure writes the targets that passed even when others
	// failed (on_failure: continue). Default: write nothing.
	ContinueOnFailure bool
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// OnReport, when set, is called with each target's scan report.
	OnReport func(job Job, r *scan.Report)
	// Jobs is how many targets are written at once. Default: 4.
	Jobs int
}

// Run builds, scans, gates and signs every job, and only then writes the
// ones allowed through to the destination. The returned Results always
// describe every job; the error joins every failure, with gate failures as
// *scan.PolicyViolation.
func Run(ctx context.Context, jobs []Job, st Stages, o RunOptions) (*Results, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	res := &Results{Targets: make([]TargetResult, len(jobs))}
	built := make([]*build.Result, len(jobs))
	sigs := make([]Signatures, len(jobs))
	errs := make([]error, len(jobs))
	bases := newBaseCache(st.ResolveBase, st.VerifyBase)

	// Fail fast, before compiling anything, on a missing or stale
	// vulnerability DB (local, instant).
	if id, ok := st.Scanner.(scan.DBIdentifier); ok {
		if _, err := id.DBIdentity(); err != nil {
			return res, fmt.Errorf("scanner: %w", err)
		}
	}
	// The destination (reachable, writable) and the base images are
	// checked while the targets build: a failure cancels the builds and is
	// the run's error; nothing is written unless it passed.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	checked := make(chan error, 1)
	go func() {
		err := preflight(ctx, jobs, st, bases)
		if err != nil {
			cancel(err)
		}
		checked <- err
	}()

	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &res.Targets[i]
			tr.Target, tr.Tags, tr.Timings = j.Target.Name, j.Tags, map[string]Duration{}
			built[i], sigs[i], errs[i] = prepare(ctx, j, st, bases, tr, log, o.OnReport)
			if errs[i] != nil {
				tr.Error = errs[i].Error()
			}
		}()
	}
	wg.Wait()
	if err := <-checked; err != nil {
		// The builds it cancelled are not failures of their own.
		res.Targets = make([]TargetResult, len(jobs))
		return res, err
	}

	failed := false
	for _, err := range errs {
		failed = failed || err != nil
	}
	if st.Destination == nil || (failed && !o.ContinueOnFailure) {
		if failed && st.Destination != nil {
			log.Warn("nothing written: a target failed (on_failure: abort)")
		}
		return res, joinErrors(jobs, errs)
	}
	// Targets are written side by side (each in the order image,
	// signatures, tags), at most o.Jobs at once.
	n := o.Jobs
	if n < 1 {
		n = 4
	}
	slots := make(chan struct{}, n)
	for i, j := range jobs {
		if errs[i] != nil || ctx.Err() != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			tr := &res.Targets[i]
			start := time.Now()
			if err := write(ctx, j, built[i], sigs[i], st.Destination, tr, log); err != nil {
				errs[i] = fmt.Errorf("pushing %s: %w", j.Target.Name, err)
				tr.Error = errs[i].Error()
			}
			tr.Timings["push"] = Duration(time.Since(start))
			if errs[i] == nil {
				log.Info("written", "target", j.Target.Name, "ref", tr.Ref)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, joinErrors(jobs, errs)
}

// Checker is implemented by destinations that can check, before the
// build, that a job can be written (e.g. push permission).
type Checker interface {
	Check(ctx context.Context, job Job) error
}

// Preparer is implemented by signers with slow set-up (decrypting a key
// with scrypt takes a third of a second): Prepare runs beside the builds,
// and its failure fails the run before anything is written.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// preflight checks what every target shares: the signer, the destination
// (reachable, writable) and the base images, side by side.
// With a deferred main check (PlanOptions.DeferMainCheck), preflight also
// waits for it. The first failure is the result.
func preflight(ctx context.Context, jobs []Job, st Stages, bases *baseCache) error {
	checks := []func() error{func() error { return checkShared(ctx, jobs, st, bases) }}
	if p, ok := st.Signer.(Preparer); ok {
		checks = append(checks, func() error { return p.Prepare(ctx) })
	}
	if len(jobs) > 0 && jobs[0].mains != nil {
		checks = append(checks, func() error { return jobs[0].mains.wait(ctx) })
	}
	done := make(chan error, len(checks))
	for _, c := range checks {
		go func() { done <- c() }()
	}
	for range checks {
		if err := <-done; err != nil {
			return err
		}
	}
	return nil
}

func checkShared(ctx context.Context, jobs []Job, st Stages, bases *baseCache) error {
	if c, ok := st.Destination.(Checker); ok {
		seen := map[string]bool{}
		for _, j := range jobs {
			key := j.Repository.String()
			if seen[key] {
				continue
			}
			seen[key] = true
			if err := c.Check(ctx, j); err != nil {
				return err
			}
		}
	}
	seen := map[string]bool{}
	for _, j := range jobs {
		if seen[j.BaseRef] {
			continue
		}
		seen[j.BaseRef] = true
		if _, err := bases.get(ctx, j.BaseRef); err != nil {
			return err
		}
	}
	return nil
}

// prepare runs everything before the write: base, build, scan, gate, sign.
func prepare(ctx context.Context, j Job, st Stages, bases *baseCache, tr *TargetResult, log *slog.Logger, onReport func(Job, *scan.Report)) (*build.Result, Signatures, error) {
	name := j.Target.Name
	start := time.Now()
	t := j.Target
	if t.AllPlatforms {
		// The platforms come from the base: it is needed first.
		base, err := bases.get(ctx, j.BaseRef)
		if err != nil {
			return nil, nil, err
		}
		t.Base = base
		if t.Platforms, err = base.LinuxPlatforms(); err != nil {
			return nil, nil, fmt.Errorf("building %s: %w", name, err)
		}
	} else {
		// Resolved while the platforms compile.
		t.ResolveBase = func(ctx context.Context) (*build.Base, error) { return bases.get(ctx, j.BaseRef) }
	}
	log.Info("building", "target", name, "platforms", len(t.Platforms), "base", j.BaseRef)
	b, err := st.Builder.Build(ctx, t)
	tr.Timings["build"] = Duration(time.Since(start))
	if err != nil {
		return nil, nil, fmt.Errorf("building %s: %w", name, err)
	}
	tr.setBuild(b)
	var report *scan.Report
	if st.Scanner != nil {
		start = time.Now()
		log.Info("scanning", "target", name)
		report, err = st.Scanner.Scan(ctx, b.Index)
		tr.Timings["scan"] = Duration(time.Since(start))
		if err != nil {
			return nil, nil, fmt.Errorf("scanning %s: %w", name, err)
		}
		if onReport != nil {
			onReport(j, report)
		}
		gerr := scan.Gate(report, st.Gate)
		tr.setScan(report, gerr)
		if gerr != nil {
			return nil, nil, fmt.Errorf("gate of %s: %w", name, gerr)
		}
	}
	var sigs Signatures
	if st.Signer != nil {
		start = time.Now()
		sigs, err = st.Signer.Sign(ctx, j, b, report)
		tr.Timings["sign"] = Duration(time.Since(start))
		if err != nil {
			return nil, nil, fmt.Errorf("signing %s: %w", name, err)
		}
		tr.Signatures = sigs.Refs()
	}
	return b, sigs, nil
}

// manifestGater is implemented by destinations that can write a job's
// signatures while its image is written: blobs and reads go ahead, and
// every manifest PUT made with the returned context waits for wait.
type manifestGater interface {
	GateManifests(ctx context.Context, wait func(context.Context) error) context.Context
}

// write writes one target in the order that keeps every tag valid: image
// (blobs, manifests, index), then signatures, then tags. Where the
// destination allows it, the signatures' blobs go up while the image is
// written, and their manifests once it is.
func write(ctx context.Context, j Job, b *build.Result, sigs Signatures, d Destination, tr *TargetResult, log *slog.Logger) error {
	start := time.Now()
	var (
		ref  string
		ierr error
		serr error
	)
	if g, ok := d.(manifestGater); ok && sigs != nil {
		written := make(chan struct{})
		go func() {
			defer close(written)
			ref, ierr = d.WriteImage(ctx, j, b)
			log.Debug("wrote image", "target", j.Target.Name, "took", time.Since(start).Round(time.Millisecond))
		}()
		wait := func(ctx context.Context) error {
			select {
			case <-written:
				if ierr != nil {
					return fmt.Errorf("the image was not written: %w", ierr)
				}
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		serr = d.WriteSignatures(g.GateManifests(ctx, wait), j, b, sigs)
		<-written
	} else {
		ref, ierr = d.WriteImage(ctx, j, b)
		log.Debug("wrote image", "target", j.Target.Name, "took", time.Since(start).Round(time.Millisecond))
		if ierr == nil && sigs != nil {
			serr = d.WriteSignatures(ctx, j, b, sigs)
		}
	}
	if ierr != nil {
		return ierr
	}
	tr.Ref = ref
	if serr != nil {
		return serr
	}
	if sigs != nil {
		log.Debug("wrote signatures", "target", j.Target.Name, "took", time.Since(start).Round(time.Millisecond))
	}
	start = time.Now()
	if err := d.Tag(ctx, j, b); err != nil {
		return err
	}
	log.Debug("tagged", "target", j.Target.Name, "took", time.Since(start).Round(time.Millisecond))
	tr.Pushed = true
	return nil
}

func joinErrors(jobs []Job, errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// baseCache resolves (and verifies) each base once per run.
type baseCache struct {
	resolve BaseResolver
	verify  BaseVerifier
	mu      sync.Mutex
	calls   map[string]*baseCall
}

type baseCall struct {
	once sync.Once
	base *build.Base
	err  error
}

func newBaseCache(r BaseResolver, v BaseVerifier) *baseCache {
	if r == nil {
		r = func(ctx context.Context, ref string) (*build.Base, error) { return build.ResolveBase(ctx, ref) }
	}
	return &baseCache{resolve: r, verify: v, calls: map[string]*baseCall{}}
}

func (c *baseCache) get(ctx context.Context, ref string) (*build.Base, error) {
	c.mu.Lock()
	call := c.calls[ref]
	if call == nil {
		call = &baseCall{}
		c.calls[ref] = call
	}
	c.mu.Unlock()
	call.once.Do(func() {
		call.base, call.err = c.resolve(ctx, ref)
		if call.err == nil && c.verify != nil && !call.base.IsScratch() {
			call.err = c.verify(ctx, call.base)
		}
	})
	return call.base, call.err
}
