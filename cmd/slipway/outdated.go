package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/resolve"
	"github.com/slipway-build/slipway/scan"
	"github.com/spf13/cobra"
)

// outdatedFlags are the flags of outdated.
type outdatedFlags struct {
	images     []string
	results    string
	modules    bool
	format     string
	outputJSON string
	allowStale bool
	insecure   []string
}

func newOutdatedCmd(g *globalFlags) *cobra.Command {
	f := &outdatedFlags{}
	cmd := &cobra.Command{
		Use:   "outdated [TARGET...]",
		Short: "Say whether pushed images need a rebuild: base tag moved, findings a rebuild or a newer module fixes",
		Long: `For each target (or the TARGETs named), reads the image pushed for it, compares
the base recorded in it (org.opencontainers.image.base.digest) with what the
configured base names now, and scans the image with today's DB: each finding
is fixed by a rebuild on the current base (a base package the current base no
longer has vulnerable), by a newer Go module (the version to go to is shown),
or by neither.

The image is the --image reference, else the reference the last push recorded
(dist/slipway-pushed.json, or --results), else the target's
repository with its first tag that is not a template (latest by default).

Exit codes: 0 up to date; 3 a rebuild is due (the base tag moved, slipway.yaml
names another base, or a rebuild fixes a finding of the gate's severities);
with --modules also when a newer module fixes such a finding (a code change:
go get, not a rebuild); 1 when it could not be judged (registry or image
unreachable, missing or stale DB, "cannot judge"); 2 usage or config error.
In a scheduled job: slipway outdated || slipway run --push`,
		Example: `  slipway outdated
  slipway outdated hello --image registry.example.com/team/hello:v1.2.0
  slipway outdated --modules --format json > outdated.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch f.format {
			case "", "table", "json":
			default:
				return &usageError{fmt.Errorf("--format %q: want table or json", f.format)}
			}
			lc, err := loadConfig(g, cmd.Flags(), merge(scanBindings, map[string]string{"repository": "repository"}))
			if err != nil {
				return err
			}
			return runOutdated(cmd.Context(), g, f, lc, args, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	registerScanConfigFlags(fl)
	fl.StringSliceVar(&f.images, "image", nil, "image to check, [TARGET=]REF (repeatable; a bare REF needs exactly one target)")
	fl.StringVar(&f.results, "results", "", "results JSON of a push (default: what was pushed, per target, dist/slipway-pushed.json, when present)")
	fl.BoolVar(&f.modules, "modules", false, "exit 3 also when a newer Go module fixes a finding (a code change, not a rebuild)")
	fl.StringVar(&f.format, "format", "table", "stdout format: table (nothing on stdout; the table goes to stderr) or json")
	fl.StringVar(&f.outputJSON, "output-json", "", "also write the results as JSON to this file")
	fl.BoolVar(&f.allowStale, "allow-stale-db", false, "scan with a DB older than scan.db.max_age (warns with its age)")
	fl.StringVar(new(string), "repository", "", "repository the images were pushed under, as <repository>/<target> (config: repository)")
	fl.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host reached over plain HTTP (repeatable)")
	return cmd
}

// runOutdated plans the targets, picks their images and calls
// pipeline.Outdated; the results go to the reporters whatever the verdict.
func runOutdated(ctx context.Context, g *globalFlags, f *outdatedFlags, lc *loadedConfig, args []string, stdout io.Writer) error {
	log := g.logger()
	insecure := insecureFunc(lc.Config, f.insecure)
	jobs, err := pipeline.Plan(ctx, lc.Config, pipeline.PlanOptions{
		ConfigDir: lc.Dir, Select: args, Environ: os.Environ(), Insecure: insecure, Logger: log,
	})
	if err != nil {
		return lc.withFile(err)
	}
	images, err := imageFlags(f.images, jobs)
	if err != nil {
		return err
	}
	results := map[string]string{}
	resultsFile, explicit := f.results, f.results != ""
	if !explicit {
		// What was pushed, per target: a local build since does not hide it.
		resultsFile = pushedResultsPath(lc)
	}
	if pushed, err := resolve.LoadResults(resultsFile); err == nil {
		for name, p := range pushed {
			results[name] = p.Ref
		}
	} else if explicit || !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading results of the last run: %w", err)
	}
	ojobs, err := pipeline.OutdatedJobs(lc.Config, jobs, images, results, insecure)
	if err != nil {
		return lc.withFile(err)
	}

	reg, err := newRegistry(lc)
	if err != nil {
		return err
	}
	// Bases are read as a build reads them: through the content cache.
	baseOpts, err := lc.baseReadOptions(reg)
	if err != nil {
		return err
	}
	s, err := newScanner(lc, f.allowStale, log)
	if err != nil {
		return err
	}
	reports, err := lc.cacheDir("reports")
	if err != nil {
		return err
	}
	policy, err := gatePolicy(lc)
	if err != nil {
		return err
	}
	st := pipeline.OutdatedStages{
		Remote: reg.RemoteOptions(context.Background()),
		ResolveBase: func(ctx context.Context, ref string) (*build.Base, error) {
			// oci:DIR is read relative to the config file, and recorded as written.
			b, err := build.ResolveBase(ctx, pipeline.ResolveLayoutBase(lc.Dir, ref), baseOpts...)
			if err == nil && strings.HasPrefix(ref, build.LayoutPrefix) {
				b.Name, b.Ref = ref, ref
			}
			return b, err
		},
		Scanner: scan.Cached(s, reports),
		Policy:  policy,
	}
	res, err := pipeline.Outdated(ctx, ojobs, st, pipeline.OutdatedOptions{Modules: f.modules, Logger: log})
	if res != nil {
		if human := g.humanOut(); human != nil {
			printOutdated(human, res)
		}
		if f.format == "json" {
			if werr := encodeJSON(stdout, res); werr != nil && err == nil {
				err = werr
			}
		}
		if f.outputJSON != "" {
			if werr := writeFileAtomic(f.outputJSON, func(w io.Writer) error { return encodeJSON(w, res) }); werr != nil && err == nil {
				err = fmt.Errorf("writing --output-json: %w", werr)
			}
		}
	}
	boundCaches(lc, log)
	return err
}

// imageFlags maps --image values to targets: TARGET=REF, or a bare REF
// when exactly one target is selected. Image references hold no "=".
func imageFlags(vals []string, jobs []pipeline.Job) (map[string]string, error) {
	out := map[string]string{}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Target.Name)
	}
	for _, v := range vals {
		target, ref, ok := strings.Cut(v, "=")
		if !ok {
			if len(jobs) != 1 {
				return nil, &usageError{fmt.Errorf("--image %s: name the target (TARGET=REF) when %d targets are checked", v, len(jobs))}
			}
			target, ref = names[0], v
		}
		if !slices.Contains(names, target) {
			return nil, &usageError{fmt.Errorf("--image %s: no selected target named %q", v, target)}
		}
		if _, dup := out[target]; dup {
			return nil, &usageError{fmt.Errorf("--image: target %s named twice", target)}
		}
		out[target] = ref
	}
	return out, nil
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printOutdated writes the human account: one line per target, then per
// target its findings that something fixes (and how many nothing fixes),
// the module updates and the reasons.
func printOutdated(w io.Writer, res *pipeline.OutdatedResults) {
	if len(res.Targets) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTARGET\tSTATUS\tBASE\tBUILT ON\tNOW\tIMAGE")
	for _, t := range res.Targets {
		status := "up to date"
		switch {
		case t.Error != "":
			status = "error"
		case t.RebuildDue:
			status = "rebuild due"
		}
		built, now := short(t.Base.RecordedDigest), short(t.Base.CurrentDigest)
		if t.Base.Scratch {
			now = "-"
		}
		if built == "" {
			built = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Target, status, t.Base.Name, built, cmp.Or(now, "-"), cmp.Or(t.Image, t.ImageRef))
	}
	tw.Flush()
	for _, t := range res.Targets {
		if t.Error != "" {
			continue
		}
		var fixable []pipeline.OutdatedFinding
		none := 0
		for _, f := range t.Findings {
			if f.Fix == pipeline.FixNone {
				none++
				continue
			}
			fixable = append(fixable, f)
		}
		fmt.Fprintf(w, "\n%s: %d %s", t.Target, len(t.Findings), pluralWord(len(t.Findings), "finding"))
		if !t.DBUpdatedAt.IsZero() {
			fmt.Fprintf(w, " (db updated %s)", t.DBUpdatedAt.UTC().Format("2006-01-02 15:04 MST"))
		}
		fmt.Fprintf(w, ", %d fixed by neither a rebuild nor a newer module\n", none)
		if len(fixable) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FIX\tSEVERITY\tID\tPACKAGE\tINSTALLED\tFIXED\tPLATFORMS")
			for _, f := range fixable {
				fix := "rebuild (current base)"
				fixed := f.FixedVersion
				if f.Fix == pipeline.FixModule {
					fix, fixed = "newer module", f.Upgrade
					if f.PkgName == "stdlib" {
						fix = "newer Go"
					}
				}
				sev := f.Severity
				if f.Suppressed {
					sev = "(" + sev + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fix, sev, f.ID, f.PkgName, f.InstalledVersion, cmp.Or(fixed, "-"), strings.Join(f.Platforms, ","))
			}
			tw.Flush()
		}
		for _, u := range t.ModuleUpdates {
			if u.Module == "stdlib" {
				fmt.Fprintf(w, "%s: build with Go %s or later (now %s): %s\n", t.Target, u.To, u.From, strings.Join(u.Findings, ", "))
				continue
			}
			fmt.Fprintf(w, "%s: go get %s@%s (now %s): %s\n", t.Target, u.Module, u.To, u.From, strings.Join(u.Findings, ", "))
		}
		for _, r := range t.Reasons {
			fmt.Fprintf(w, "%s: %s\n", t.Target, r)
		}
	}
}

// short abbreviates a digest for the table.
func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}

func pluralWord(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}
