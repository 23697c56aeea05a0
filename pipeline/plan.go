package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/build"
)

// Job is one target, fully resolved: templates expanded, paths absolute,
// platforms parsed. Its base is still a name; Run resolves it.
type Job struct {
	// Target is what the builder builds (Base is nil until resolved).
	Target build.Target
	// BaseRef is the base as configured.
	BaseRef string
	// Tags are the expanded tags.
	Tags []string
	// Repository is where the image goes; zero when writing a layout.
	Repository name.Repository
	// Git describes the source checkout.
	Git GitInfo
	// SignAnnotations are the expanded signed annotations.
	SignAnnotations map[string]string

	// mains is the check, still running, that every planned target's
	// main is a package main (PlanOptions.DeferMainCheck); Run waits for
	// it beside the builds.
	mains *mainChecks
}

// PlanOptions are the inputs of Plan besides the config.
type PlanOptions struct {
	// ConfigDir is the directory relative paths in the config start from.
	ConfigDir string
	// Select limits the plan to these target names (all when empty).
	Select []string
	// Environ is the process environment (KEY=VALUE).
	Environ []string
	// Insecure reports whether plain HTTP is allowed for a registry host.
	Insecure func(host string) bool
	// Logger receives warnings (a templated tag that expanded to nothing);
	// nil discards.
	Logger *slog.Logger
	// DeferMainCheck leaves the check that each target's main is one
	// package main to Run, which makes it beside the builds instead of
	// before them (its go list is the one the first platform's binary
	// cache key uses); a failed check fails the run before anything is
	// written, with the same *ConfigError Plan would return.
	DeferMainCheck bool
}

// Plan expands c (which must have passed Validate) into one Job per
// selected target.
func Plan(ctx context.Context, c *Config, o PlanOptions) ([]Job, error) {
	if len(c.Targets) == 0 {
		return nil, &ConfigError{Key: "targets", Msg: "at least one target is required"}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	secret := secretEnv(c)
	env := map[string]string{}
	for _, kv := range o.Environ {
		k, v, _ := strings.Cut(kv, "=")
		if !build.IsSecretEnv(k, secret) {
			env[k] = v
		}
	}
	want := map[string]bool{}
	for _, s := range o.Select {
		want[s] = true
	}
	for s := range want {
		found := false
		for _, t := range c.Targets {
			found = found || t.Name == s
		}
		if !found {
			return nil, &ConfigError{Key: "targets", Msg: fmt.Sprintf("no target named %q", s)}
		}
	}
	gitByDir := map[string]GitInfo{}
	var jobs []Job
	var keys []string // targets[i] of each job
	for i, t := range c.Targets {
		if len(want) > 0 && !want[t.Name] {
			continue
		}
		key := fmt.Sprintf("targets[%d]", i)
		dir := t.Dir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(o.ConfigDir, dir)
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, &ConfigError{Key: key + ".dir", Msg: fmt.Sprintf("%s is not a directory", dir)}
		}
		g, ok := gitByDir[dir]
		if !ok {
			g = ReadGit(ctx, dir)
			gitByDir[dir] = g
		}
		created, err := BuildTime(env["SOURCE_DATE_EPOCH"], g)
		if err != nil {
			return nil, err
		}
		data := TemplateData{Git: g, Env: env, Date: created.Format(time.RFC3339), Target: t.Name, secret: secret}
		wrap := func(field string, err error) error {
			return &ConfigError{Key: key + "." + field, Msg: err.Error()}
		}
		j := Job{BaseRef: t.Base, Git: g}
		if j.BaseRef == "" {
			j.BaseRef = c.Base
		}
		for n, tmpl := range t.Tags {
			tag, err := Expand(tmpl, data)
			if err != nil {
				return nil, wrap("tags", err)
			}
			if tag == "" && strings.Contains(tmpl, "{{") {
				// {{.Git.Tag}} on a commit without a tag: no tag, not an error.
				log.Warn("tag skipped: its template expanded to nothing", "target", t.Name, "key", fmt.Sprintf("%s.tags[%d]", key, n), "template", tmpl)
				continue
			}
			if err := CheckTag(tag); err != nil {
				return nil, &ConfigError{Key: fmt.Sprintf("%s.tags[%d]", key, n), Msg: err.Error()}
			}
			j.Tags = append(j.Tags, tag)
		}
		bt := build.Target{Name: t.Name, Dir: dir, Main: t.Main, Flags: t.Flags, Env: t.Env, SecretEnv: secret, Created: created, Revision: g.Commit, Dirty: g.Dirty}
		if bt.Ldflags, err = expandAll(t.Ldflags, data); err != nil {
			return nil, wrap("ldflags", err)
		}
		if err := checkLdflags(bt.Ldflags); err != nil {
			return nil, wrap("ldflags", err)
		}
		if bt.Source, err = Expand(c.Source, data); err != nil {
			return nil, &ConfigError{Key: "source", Msg: err.Error()}
		}
		bt.Version = g.Tag
		plats := t.Platforms
		if len(plats) == 0 {
			plats = c.Platforms
		}
		if len(plats) == 1 && plats[0] == build.AllPlatforms {
			bt.AllPlatforms, plats = true, nil
		}
		for _, p := range plats {
			pp, err := build.ParsePlatform(p)
			if err != nil {
				return nil, wrap("platforms", err)
			}
			bt.Platforms = append(bt.Platforms, pp)
		}
		bt.Platforms = dedupePlatforms(bt.Platforms)
		img := t.Image
		bt.Image = build.ImageConfig{User: img.User, Ports: img.Ports, Workdir: img.Workdir, Args: img.Args,
			Scratch: scratchFiles(img.Scratch), Healthcheck: healthConfig(img.Healthcheck)}
		for n, f := range t.Files {
			mode, err := FileMode(f.Mode)
			if err != nil {
				return nil, &ConfigError{Key: fmt.Sprintf("%s.files[%d].mode", key, n), Msg: err.Error()}
			}
			src := f.Src
			if !filepath.IsAbs(src) {
				src = filepath.Join(o.ConfigDir, src)
			}
			if src, err = filepath.Abs(src); err != nil {
				return nil, err
			}
			bt.Files = append(bt.Files, build.File{Src: src, Dst: f.Dst, Mode: mode})
		}
		if bt.Image.Env, err = expandMap(img.Env, data); err != nil {
			return nil, wrap("image.env", err)
		}
		if bt.Image.Labels, err = expandMap(img.Labels, data); err != nil {
			return nil, wrap("image.labels", err)
		}
		if bt.Image.Annotations, err = expandMap(img.Annotations, data); err != nil {
			return nil, wrap("image.annotations", err)
		}
		if j.SignAnnotations, err = expandMap(c.Sign.Annotations, data); err != nil {
			return nil, &ConfigError{Key: "sign.annotations", Msg: err.Error()}
		}
		if c.Repository != "" || t.Repository != "" {
			repo, err := c.RepositoryFor(t.Name, o.Insecure)
			if err != nil {
				key := "repository"
				if t.Repository != "" {
					key = fmt.Sprintf("targets[%d].repository", i)
				}
				return nil, &ConfigError{Key: key, Msg: err.Error()}
			}
			j.Repository = repo
		}
		j.Target = bt
		jobs = append(jobs, j)
		keys = append(keys, key)
	}
	mc, err := startMainChecks(ctx, jobs, keys)
	if err != nil {
		return nil, err
	}
	if !o.DeferMainCheck {
		if err := mc.wait(ctx); err != nil {
			return nil, err
		}
		return jobs, nil
	}
	for i := range jobs {
		jobs[i].mains = mc
	}
	return jobs, nil
}

// scratchFiles applies the defaults (every file on) to image.scratch.
func scratchFiles(s ScratchConfig) build.ScratchFiles {
	on := func(b *bool) bool { return b == nil || *b }
	return build.ScratchFiles{Zoneinfo: on(s.Zoneinfo), Passwd: on(s.Passwd), Tmp: on(s.Tmp)}
}

// healthConfig is image.healthcheck (validated) as the image config's
// Healthcheck: the test in exec form, ["CMD", command, args…].
func healthConfig(h *HealthcheckConfig) *v1.HealthConfig {
	if h == nil {
		return nil
	}
	test := h.Test
	if test[0] != "CMD" && test[0] != "NONE" {
		test = append([]string{"CMD"}, test...)
	}
	return &v1.HealthConfig{
		Test:        append([]string(nil), test...),
		Interval:    time.Duration(h.Interval),
		Timeout:     time.Duration(h.Timeout),
		StartPeriod: time.Duration(h.StartPeriod),
		Retries:     h.Retries,
	}
}

// mainChecks is build.CheckMain of every planned target, running.
type mainChecks struct {
	done chan struct{}
	err  error
}

// startMainChecks starts build.CheckMain for every job, concurrently (one
// go list each, at most one per CPU at once).
func startMainChecks(ctx context.Context, jobs []Job, keys []string) (*mainChecks, error) {
	checks := make([]func(context.Context) error, len(jobs))
	for i := range jobs {
		c, err := build.StartCheckMain(&jobs[i].Target)
		if err != nil {
			return nil, fmt.Errorf("checking main of %s: %w", jobs[i].Target.Name, err)
		}
		checks[i] = c
	}
	mc := &mainChecks{done: make(chan struct{})}
	go func() {
		defer close(mc.done)
		errs := make([]error, len(jobs))
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.NumCPU())
		for i, check := range checks {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				errs[i] = check(ctx)
			})
		}
		wg.Wait()
		mc.err = firstMainError(jobs, keys, errs)
	}()
	return mc, nil
}

// firstMainError is the error of the first target in config order.
func firstMainError(jobs []Job, keys []string, errs []error) error {
	for i, err := range errs {
		var nm *build.NotMainError
		switch {
		case errors.As(err, &nm):
			return &ConfigError{Key: keys[i] + ".main", Msg: err.Error()}
		case err != nil:
			return fmt.Errorf("checking main of %s: %w", jobs[i].Target.Name, err)
		}
	}
	return nil
}

// wait is the checks' verdict, or ctx's error if it ends first.
func (mc *mainChecks) wait(ctx context.Context) error {
	if mc == nil {
		return nil
	}
	select {
	case <-mc.done:
		return mc.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RepositoryFor is where target's image goes: the target's own
// repository when it sets one, else <repository>/<target>. Either is
// reached over plain HTTP when insecure (if set) allows its host.
func (c *Config) RepositoryFor(target string, insecure func(host string) bool) (name.Repository, error) {
	for _, t := range c.Targets {
		if t.Name == target && t.Repository != "" {
			var opts []name.Option
			if r, err := name.NewRepository(t.Repository); err == nil && insecure != nil && insecure(r.RegistryStr()) {
				opts = append(opts, name.Insecure)
			}
			return name.NewRepository(t.Repository, opts...)
		}
	}
	if c.Repository == "" {
		return name.Repository{}, fmt.Errorf("no repository for target %q (set repository, or the target's repository)", target)
	}
	return TargetRepository(c.Repository, target, insecure)
}

// TargetRepository is where target's image goes: <repository>/<target>,
// reached over plain HTTP when insecure (if set) allows the host.
func TargetRepository(repository, target string, insecure func(host string) bool) (name.Repository, error) {
	var opts []name.Option
	if insecure != nil {
		if r, err := name.NewRepository(repository); err == nil && insecure(r.RegistryStr()) {
			opts = append(opts, name.Insecure)
		}
	}
	return name.NewRepository(strings.TrimSuffix(repository, "/")+"/"+target, opts...)
}

func dedupePlatforms(ps []v1.Platform) []v1.Platform {
	seen := map[string]bool{}
	var out []v1.Platform
	for _, p := range ps {
		s := build.PlatformString(p)
		if !seen[s] {
			seen[s] = true
			out = append(out, p)
		}
	}
	return out
}
