package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/spf13/cobra"
)

// buildFlags are the flags of build and run.
type buildFlags struct {
	push       bool
	repository string
	platforms  []string
	ociLayout  string
	imageRefs  string
	jobs       int
	insecure   []string
}

func (f *buildFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.push, "push", false, "push to the configured repository (default: write to the OCI layout)")
	fl.StringVar(&f.repository, "repository", "", "repository to push under, as <repository>/<target> (config: repository)")
	fl.StringSliceVar(&f.platforms, "platform", nil, "platforms to build, e.g. linux/amd64,linux/arm64 (config: platforms)")
	fl.StringVar(&f.ociLayout, "oci-layout", "", "OCI layout directory when not pushing (config: oci_layout, default dist/oci)")
	fl.StringVar(&f.imageRefs, "image-refs", "", "also write the digest references to this file, one per line")
	fl.IntVarP(&f.jobs, "jobs", "j", 0, "concurrent builds and uploads (config: jobs, default: CPU count)")
	fl.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host reached over plain HTTP (repeatable)")
}

// bindings maps flag names to config keys.
func (f *buildFlags) bindings() map[string]string {
	return map[string]string{
		"repository": "repository", "platform": "platforms", "oci-layout": "oci_layout", "jobs": "jobs",
	}
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
  slipway build hello --platform linux/amd64,linux/arm64 --image-refs refs.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, f, args)
		},
	}
	f.register(cmd)
	return cmd
}

func runBuild(cmd *cobra.Command, g *globalFlags, f *buildFlags, args []string) error {
	ctx := cmd.Context()
	lc, err := loadConfig(g, cmd.Flags(), f.bindings())
	if err != nil {
		return err
	}
	if f.push && lc.Repository == "" {
		return &pipeline.ConfigError{File: lc.File, Key: "repository", Msg: "--push needs a repository (set repository, SLIPWAY_REPOSITORY or --repository)"}
	}
	log := g.logger()
	jobs, err := pipeline.Plan(ctx, lc.Config, pipeline.PlanOptions{
		ConfigDir: lc.Dir, Select: args, Environ: os.Environ(), Insecure: insecureFunc(lc.Config, f.insecure),
	})
	if err != nil {
		return withFile(err, lc.File)
	}
	st, err := buildStages(lc)
	if err != nil {
		return err
	}
	if f.push {
		reg, err := registry(lc.Config, lc.Jobs)
		if err != nil {
			return err
		}
		st.Destination = &pipeline.RegistryDestination{Registry: reg}
	} else {
		l, err := publish.NewLayout(lc.OCILayout)
		if err != nil {
			return err
		}
		st.Destination = &pipeline.LayoutDestination{Layout: l, Dir: lc.OCILayout}
	}
	res, err := pipeline.Run(ctx, jobs, st, pipeline.RunOptions{
		ContinueOnFailure: lc.OnFailure == pipeline.OnFailureContinue,
		Logger:            log,
	})
	if werr := printRefs(res, f.imageRefs); werr != nil && err == nil {
		err = werr
	}
	return err
}

// buildStages makes the resolve and build stages shared by build and run.
func buildStages(lc *loadedConfig) (pipeline.Stages, error) {
	jobs := lc.Jobs
	if jobs == 0 {
		jobs = runtime.NumCPU()
	}
	b, err := build.New(build.WithJobs(jobs), build.WithCACertificates(lc.CACertificates))
	if err != nil {
		return pipeline.Stages{}, &pipeline.ConfigError{File: lc.File, Key: "ca_certificates", Msg: err.Error()}
	}
	ropts, err := remoteOptions(lc.Config, jobs)
	if err != nil {
		return pipeline.Stages{}, err
	}
	return pipeline.Stages{
		Builder: b,
		ResolveBase: func(ctx context.Context, ref string) (*build.Base, error) {
			return build.ResolveBase(ctx, ref, ropts...)
		},
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

// withFile adds the config file to a config error that lacks one.
func withFile(err error, file string) error {
	if ce, ok := err.(*pipeline.ConfigError); ok && ce.File == "" {
		c := *ce
		c.File = file
		return &c
	}
	return err
}
