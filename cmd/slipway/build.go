package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/internal/cachedir"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/slipway-build/slipway/resolve"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
	"github.com/spf13/cobra"
)

// buildFlags are the flags of build and run.
type buildFlags struct {
	push       bool
	scan       bool
	sign       bool
	allowStale bool
	repository string
	platforms  []string
	ociLayout  string
	ociArchive string
	imageRefs  string
	outputJSON string
	resolveDir string
	jobs       int
	insecure   []string
	from       []string // run --from: merge these shards instead of building
}

func (f *buildFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.push, "push", false, "push to the configured repository (default: write to the OCI layout)")
	fl.StringVar(&f.repository, "repository", "", "repository to push under, as <repository>/<target> (config: repository)")
	fl.StringSliceVar(&f.platforms, "platform", nil, "platforms to build, e.g. linux/amd64,linux/arm64, or all: every linux platform of the base (config: platforms)")
	fl.StringVar(&f.ociLayout, "oci-layout", "", "OCI layout directory when not pushing (config: oci_layout, default dist/oci)")
	fl.StringVar(&f.ociArchive, "oci-archive", "", "write the OCI layout as one tar FILE instead (skopeo's and podman's oci-archive; read by push/scan oci-archive:FILE)")
	fl.StringVar(&f.imageRefs, "image-refs", "", "also write the digest references to this file, one per line")
	fl.StringVar(&f.outputJSON, "output-json", "", "write the run's results (digests, findings, signatures, timings) as JSON")
	fl.IntVarP(&f.jobs, "jobs", "j", 0, "concurrent builds and uploads (config: jobs, default: CPU count)")
	fl.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host reached over plain HTTP (repeatable)")
	fl.BoolVar(&f.allowStale, "allow-stale-db", false, "scan with a DB older than scan.db.max_age (warns with its age)")
	registerScanConfigFlags(fl)
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return f.check(cmd) }
}

// bindings maps flag names to config keys.
func (f *buildFlags) bindings() map[string]string {
	return merge(scanBindings, map[string]string{
		"repository": "repository", "platform": "platforms", "oci-layout": "oci_layout", "jobs": "jobs",
	})
}

// check refuses flags that cannot go together (a usage error, exit 2).
func (f *buildFlags) check(cmd *cobra.Command) error {
	if len(f.from) > 0 && cmd.Flags().Changed("platform") {
		// The config's platforms are what the shards must cover.
		return &usageError{fmt.Errorf("--from and --platform cannot be used together: the merge assembles the config's platforms from the shards")}
	}
	if f.ociArchive == "" {
		return nil
	}
	for _, other := range []string{"push", "oci-layout"} {
		if cmd.Flags().Changed(other) {
			return &usageError{fmt.Errorf("--oci-archive and --%s cannot be used together", other)}
		}
	}
	return nil
}

func newBuildCmd(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build [TARGET...]",
		Short: "Build targets into multi-platform images (and push them)",
		Example: `  # Build every target in slipway.yaml into dist/oci
  slipway build

  # Build and push to <repository>/<target>, printing repo@sha256:… per target
  slipway build --push --repository registry.example.com/team

  # Only one target, two platforms, references to a file
  slipway build hello --platform linux/amd64,linux/arm64 --image-refs refs.txt

  # One tar for another CI job (skopeo/podman oci-archive), pushed there unchanged
  slipway build --oci-archive images.tar
  slipway push oci-archive:images.tar --repository registry.example.com/team`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), f.bindings())
			if err != nil {
				return err
			}
			// build's optional stages are its --scan and --sign flags.
			return runBuild(cmd.Context(), g, f, lc, args, optional{scan: f.scan, sign: f.sign, summary: f.scan || f.sign, shard: true})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&f.scan, "scan", false, "scan every platform before writing; a failed gate writes nothing (exit 3)")
	cmd.Flags().BoolVar(&f.sign, "sign", false, "sign the index and each platform manifest with sign.key before writing")
	return cmd
}

// optional says which optional stages a pipeline has, whether the
// summary table is printed, and whether a layout or archive written
// records shard records for a later merge (build).
type optional struct{ scan, sign, summary, shard bool }

// runBuild runs the pipeline for build and run: it makes the stages, calls
// pipeline.Run and hands the results to the reporters.
func runBuild(ctx context.Context, g *globalFlags, f *buildFlags, lc *loadedConfig, args []string, opt optional) error {
	if f.push && lc.Repository == "" {
		for _, t := range lc.Targets {
			if t.Repository == "" && (len(args) == 0 || slices.Contains(args, t.Name)) {
				return &pipeline.ConfigError{File: lc.File, Key: "repository", Msg: fmt.Sprintf("--push needs a repository for target %s (set repository, SLIPWAY_REPOSITORY or --repository, or the target's repository)", t.Name)}
			}
		}
	}
	log := g.logger()
	jobs, err := pipeline.Plan(ctx, lc.Config, pipeline.PlanOptions{
		ConfigDir: lc.Dir, Select: args, Environ: os.Environ(), Insecure: insecureFunc(lc.Config, f.insecure), Logger: log,
		// Checked beside the builds: a wrong main: is still a config
		// error (exit 2) and nothing is written.
		DeferMainCheck: true,
	})
	if err != nil {
		return lc.withFile(err)
	}
	var popts []publish.Option
	if f.push {
		if p, wait := uploadProgress(g); p != nil {
			popts = append(popts, publish.WithProgress(p))
			defer wait()
		}
	}
	reg, err := newRegistry(lc, popts...)
	if err != nil {
		return err
	}
	ropts := reg.RemoteOptions(context.Background())
	baseOpts, err := lc.baseReadOptions(reg)
	if err != nil {
		return err
	}
	st, err := buildStages(lc, baseOpts, log)
	if err != nil {
		return err
	}
	if len(f.from) > 0 {
		cleanup, err := mergeStages(&st, lc, jobs, f.from, log)
		defer cleanup()
		if err != nil {
			return err
		}
	}
	scanOn, signOn := opt.scan, opt.sign
	var onReport func(pipeline.Job, *scan.Report)
	if scanOn {
		if err := lc.checkReportOutputs(len(jobs)); err != nil {
			return err
		}
		s, err := newScanner(lc, f.allowStale, log)
		if err != nil {
			return err
		}
		if st.Gate, err = gatePolicy(lc); err != nil {
			return err
		}
		reports, err := lc.cacheDir("reports")
		if err != nil {
			return err
		}
		st.Scanner = scan.Cached(s, reports)
		var mu sync.Mutex
		onReport = func(j pipeline.Job, rep *scan.Report) {
			mu.Lock()
			defer mu.Unlock()
			human := g.humanOut()
			if human != nil {
				fmt.Fprintf(human, "\n%s (%s)\n", j.Target.Name, strings.Join(rep.Platforms, ", "))
			}
			if err := writeReports(rep, lc.Scan.Reports, j.Target.Name, human, os.Stdout); err != nil {
				log.Error("writing reports", "target", j.Target.Name, "err", err)
			}
		}
	}
	if signOn {
		if st.Signer, err = deferSigner(ctx, lc, ropts, log); err != nil {
			return err
		}
	}
	var archive *pipeline.ArchiveDestination
	switch {
	case f.push:
		st.Destination = &pipeline.RegistryDestination{Registry: reg}
	case f.ociArchive != "":
		file, err := filepath.Abs(f.ociArchive) // printed, as the layout's directory is
		if err != nil {
			return err
		}
		if archive, err = pipeline.NewArchiveDestination(file); err != nil {
			return err
		}
		defer archive.Close()
		st.Destination = archive
	default:
		l, err := publish.NewLayout(lc.OCILayout)
		if err != nil {
			return err
		}
		st.Destination = &pipeline.LayoutDestination{Layout: l, Dir: lc.OCILayout}
	}
	if opt.shard && !f.push {
		// What run --from checks: see pipeline.ShardRecord.
		if st.Destination, err = pipeline.RecordShards(st.Destination, shardIdentity(lc)); err != nil {
			return err
		}
	}
	res, err := pipeline.Run(ctx, jobs, st, pipeline.RunOptions{
		ContinueOnFailure: lc.OnFailure == pipeline.OnFailureContinue,
		Logger:            log,
		OnReport:          onReport,
		Jobs:              lc.Jobs,
	})
	err = lc.withFile(err)
	if archive != nil && res != nil && slices.ContainsFunc(res.Targets, func(t pipeline.TargetResult) bool { return t.Pushed }) {
		// The archive holds what was written: every target, or with
		// on_failure: continue those that passed. Until here nothing is
		// at the file; if this fails, nothing is.
		if aerr := archive.Commit(); aerr != nil {
			for i := range res.Targets {
				res.Targets[i].Pushed = false
			}
			err = errors.Join(err, aerr)
		}
	}
	if werr := printRefs(res, f.imageRefs); werr != nil && err == nil {
		err = werr
	}
	if res != nil && opt.summary && !g.quiet {
		printSummary(os.Stderr, res)
	}
	if res != nil {
		// What resolve reads (the pushed record) changes only when
		// something was pushed.
		recordLast(lc, res, log)
		if f.push {
			recordPushed(lc, res, log)
		}
	}
	if f.outputJSON != "" && res != nil {
		if werr := writeResultsJSON(f.outputJSON, res); werr != nil && err == nil {
			err = werr
		}
	}
	if f.resolveDir != "" && err == nil && f.push {
		rs, rerr := resolve.Dir(f.resolveDir, refsOf(res))
		reportResolved(os.Stderr, rs)
		if rerr != nil {
			err = fmt.Errorf("resolving %s: %w", f.resolveDir, rerr)
		}
	} else if f.resolveDir != "" {
		log.Warn("manifests not resolved: the run did not push everything", "dir", f.resolveDir)
	}
	boundCaches(lc, log)
	if werr := githubActions(res); werr != nil && err == nil {
		err = werr
	}
	return err
}

// buildStages makes the resolve and build stages shared by build and run;
// ropts are the command's options for registry reads.
func buildStages(lc *loadedConfig, ropts []remote.Option, log *slog.Logger) (pipeline.Stages, error) {
	jobs := lc.Jobs
	if jobs == 0 {
		jobs = runtime.NumCPU()
	}
	cache, err := lc.cacheDir("build")
	if err != nil {
		return pipeline.Stages{}, err
	}
	b, err := build.New(build.WithJobs(jobs), build.WithCACertificates(lc.CACertificates), build.WithBinaryCache(cache), build.WithLogger(log))
	if err != nil {
		return pipeline.Stages{}, &pipeline.ConfigError{File: lc.File, Key: "ca_certificates", Msg: err.Error()}
	}
	// Base layers are read as many at a time as binaries are compiled.
	ropts = append(slices.Clone(ropts), remote.WithJobs(jobs))
	verify, err := baseVerifier(lc, ropts, log)
	if err != nil {
		return pipeline.Stages{}, err
	}
	return pipeline.Stages{
		Builder: b,
		ResolveBase: func(ctx context.Context, ref string) (*build.Base, error) {
			// oci:DIR is read relative to the config file, and recorded as written.
			b, err := build.ResolveBase(ctx, pipeline.ResolveLayoutBase(lc.Dir, ref), ropts...)
			if err == nil && strings.HasPrefix(ref, build.LayoutPrefix) {
				b.Name, b.Ref = ref, ref
			}
			return b, err
		},
		VerifyBase: verify,
	}, nil
}

// printRefs prints one written reference per target on stdout, and to file
// when set.
func printRefs(res *pipeline.Results, file string) error {
	if res == nil {
		return nil
	}
	var lines []string
	for _, t := range res.Targets {
		if t.Pushed && t.Ref != "" {
			lines = append(lines, t.Ref)
		}
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	if file == "" {
		return nil
	}
	data := strings.Join(lines, "\n")
	if data != "" {
		data += "\n"
	}
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		return fmt.Errorf("writing --image-refs: %w", err)
	}
	return nil
}

// cacheRoot is cache_dir, or the user cache dir's slipway/.
func (lc *loadedConfig) cacheRoot() (string, error) {
	if lc.CacheDir != "" {
		return lc.path(lc.CacheDir), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir (set cache_dir): %w", err)
	}
	return filepath.Join(base, "slipway"), nil
}

// cacheDir is the directory of one of slipway's caches, cache_dir/kind,
// created private (0700); one that others could write is refused.
func (lc *loadedConfig) cacheDir(kind string) (string, error) {
	root, err := lc.cacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, kind)
	if err := cachedir.Ensure(root); err != nil {
		return "", err
	}
	if err := cachedir.Ensure(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// baseReadOptions are the remote options bases are read with: through a
// cache of what their digests name (manifests and configs), so that an
// unchanged rerun asks the registry only for the tag.
func (lc *loadedConfig) baseReadOptions(reg *publish.Registry) ([]remote.Option, error) {
	content, err := lc.cacheDir("content")
	if err != nil {
		return nil, err
	}
	return reg.CachedReadOptions(context.Background(), content)
}

// signatureRecord is the record of signatures written to registries
// (cache_dir/signatures), which lets unchanged reruns confirm them with
// HEAD requests.
func (lc *loadedConfig) signatureRecord() (*sign.Record, error) {
	dir, err := lc.cacheDir("signatures")
	if err != nil {
		return nil, err
	}
	return sign.OpenRecord(dir)
}

// checkReportOutputs refuses, with several targets, a report output file
// (not "-") without {{.Target}}: each target's report would overwrite the
// previous one's.
func (lc *loadedConfig) checkReportOutputs(targets int) error {
	if targets < 2 {
		return nil
	}
	for i, rc := range lc.Scan.Reports {
		if rc.Output != "-" && rc.Output != "" && !strings.Contains(rc.Output, "{{.Target}}") {
			return lc.configError(fmt.Sprintf("scan.reports[%d].output", i),
				fmt.Sprintf("%q is written once per target and %d targets are built: put {{.Target}} in it (e.g. reports/{{.Target}}.sarif)", rc.Output, targets))
		}
	}
	return nil
}

// configError is a *pipeline.ConfigError about key, with the config file
// and the key's line.
func (lc *loadedConfig) configError(key, msg string) error {
	return lc.withFile(&pipeline.ConfigError{Key: key, Msg: msg})
}

// withFile adds the config file, and the line of the key, to a config
// error that lacks them (Plan does not know the file).
func (lc *loadedConfig) withFile(err error) error {
	if ce, ok := err.(*pipeline.ConfigError); ok && ce.File == "" {
		c := *ce
		c.File = lc.File
		if c.Line == 0 && lc.File != "" {
			c.Line = pipeline.KeyLine(lc.data, c.Key)
		}
		return &c
	}
	return err
}
