package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/slipway-build/slipway/resolve"
	"github.com/spf13/cobra"
)

// lastResultsPath is where build and run record the results of the last
// run, whatever it wrote: beside the OCI layout directory (dist/ by
// default).
func lastResultsPath(lc *loadedConfig) string {
	return filepath.Join(filepath.Dir(filepath.Clean(lc.OCILayout)), "slipway-results.json")
}

// pushedResultsPath is the record of what was pushed to registries, per
// target, which `slipway resolve` reads: only runs that push (build
// --push, run --push, push) change it, so resolve after a local build
// still resolves to what the registry holds.
func pushedResultsPath(lc *loadedConfig) string {
	return filepath.Join(filepath.Dir(filepath.Clean(lc.OCILayout)), "slipway-pushed.json")
}

// refsOf maps each target pushed to a registry to its digest reference
// and tags.
func refsOf(res *pipeline.Results) map[string]resolve.Pushed {
	refs := map[string]resolve.Pushed{}
	for _, t := range res.Targets {
		if t.Pushed && t.Ref != "" && !isLocalRef(t.Ref) {
			refs[t.Target] = resolve.Pushed{Ref: t.Ref, Tags: t.Tags}
		}
	}
	return refs
}

// isLocalRef reports whether ref names a local layout or archive.
func isLocalRef(ref string) bool {
	return strings.HasPrefix(ref, build.LayoutPrefix) || strings.HasPrefix(ref, publish.ArchivePrefix)
}

func newResolveCmd(g *globalFlags) *cobra.Command {
	var files []string
	var results string
	cmd := &cobra.Command{
		Use:   "resolve -f FILE|DIR|-",
		Short: "Rewrite image references in Kubernetes YAML to the pushed repo@sha256:… digests",
		Long: `Replaces, by the digest references slipway pushed (REPO@sha256:…):
"slipway://<target>" placeholders anywhere; image: values that are a
target's repository without a tag; and image: values with a tag slipway
pushed for that target. An image: value naming a target's repository with
another tag (crane:v9.9.9) or another digest is left alone, with a warning
naming the file and line. What was pushed comes from the record the runs
that push keep (dist/slipway-pushed.json, merged per target; a local
build does not change it) or --results (any results JSON). Comments and formatting are preserved.
FILE and DIR are rewritten in place (a directory recursively: *.yaml, *.yml);
"-" reads stdin and writes stdout. Nothing is written if any file fails.`,
		Example: `  slipway run --push && slipway resolve -f k8s/
  slipway resolve -f deploy.yaml --results results.json
  cat deploy.yaml | slipway resolve -f - > resolved.yaml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return &usageError{errors.New("resolve needs -f FILE, DIR or -")}
			}
			if results == "" {
				lc, err := loadConfig(g, cmd.Flags(), nil)
				if err != nil {
					return err
				}
				results = pushedResultsPath(lc)
				if _, err := os.Stat(results); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("%s does not exist: nothing was pushed from here yet (run slipway run --push or slipway push, or pass --results)", results)
				}
			}
			refs, err := resolve.LoadResults(results)
			if err != nil {
				return fmt.Errorf("reading what was pushed: %w", err)
			}
			if len(refs) == 0 {
				return fmt.Errorf("%s lists no pushed target: run slipway run --push (or push) first", results)
			}
			for _, f := range files {
				if err := resolveOne(cmd, f, refs); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - (repeatable)")
	cmd.Flags().StringVar(&results, "results", "", "results JSON of a run (default: what was pushed, per target, dist/slipway-pushed.json)")
	return cmd
}

func resolveOne(cmd *cobra.Command, f string, refs map[string]resolve.Pushed) error {
	if f == "-" {
		in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<20))
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		out, _, warns, err := resolve.Resolve(in, refs)
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		printResolveWarnings(cmd.ErrOrStderr(), "stdin", warns)
		_, err = cmd.OutOrStdout().Write(out)
		return err
	}
	fi, err := os.Stat(f)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		res, err := resolve.Dir(f, refs)
		if err != nil {
			return err
		}
		reportResolved(cmd.ErrOrStderr(), res)
		return nil
	}
	r, err := resolve.ResolveFile(f, refs)
	if err != nil {
		return err
	}
	printResolveWarnings(cmd.ErrOrStderr(), r.Path, r.Warnings)
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d reference(s) resolved\n", f, r.Changed)
	return nil
}

// reportResolved prints, per file, the references left alone (one
// warning each, FILE:LINE: …) and the count resolved.
func reportResolved(w io.Writer, res []resolve.FileResult) {
	for _, r := range res {
		printResolveWarnings(w, r.Path, r.Warnings)
		if r.Changed > 0 {
			fmt.Fprintf(w, "%s: %d reference(s) resolved\n", r.Path, r.Changed)
		}
	}
}

// printResolveWarnings prints each warning as "warning: FILE:LINE: …".
func printResolveWarnings(w io.Writer, file string, warns []resolve.Warning) {
	for _, wn := range warns {
		msg := strings.TrimPrefix(wn.String(), fmt.Sprintf("line %d: ", wn.Line))
		fmt.Fprintf(w, "warning: %s:%d: %s\n", file, wn.Line, msg)
	}
}
