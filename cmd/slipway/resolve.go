package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/resolve"
	"github.com/spf13/cobra"
)

// lastResultsPath is where build and run record their results for
// `slipway resolve`: beside the OCI layout directory (dist/ by default).
func lastResultsPath(lc *loadedConfig) string {
	return filepath.Join(filepath.Dir(filepath.Clean(lc.OCILayout)), "slipway-results.json")
}

// refsOf maps each pushed target to its digest reference.
func refsOf(res *pipeline.Results) map[string]string {
	refs := map[string]string{}
	for _, t := range res.Targets {
		if t.Pushed && t.Ref != "" {
			refs[t.Target] = t.Ref
		}
	}
	return refs
}

func newResolveCmd(g *globalFlags) *cobra.Command {
	var files []string
	var results string
	cmd := &cobra.Command{
		Use:   "resolve -f FILE|DIR|-",
		Short: "Rewrite image references in Kubernetes YAML to the pushed repo@sha256:… digests",
		Long: `Replaces "slipway://<target>" placeholders, and image: values equal to a
target's repository (with a tag or none), by the digest references pushed by
the last run (its results JSON). Comments and formatting are preserved.
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
				results = lastResultsPath(lc)
			}
			refs, err := resolve.LoadResults(results)
			if err != nil {
				return fmt.Errorf("reading results of the last run: %w", err)
			}
			if len(refs) == 0 {
				return fmt.Errorf("%s lists no pushed target: run slipway run --push first", results)
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
	cmd.Flags().StringVar(&results, "results", "", "results JSON of a run (default: the last run's, dist/slipway-results.json)")
	return cmd
}

func resolveOne(cmd *cobra.Command, f string, refs map[string]string) error {
	if f == "-" {
		in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<20))
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		out, _, err := resolve.Resolve(in, refs)
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
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
		for _, r := range res {
			if r.Changed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d reference(s) resolved\n", r.Path, r.Changed)
			}
		}
		return nil
	}
	n, err := resolve.ResolveFile(f, refs)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d reference(s) resolved\n", f, n)
	return nil
}
