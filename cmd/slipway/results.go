package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
)

// writeResultsJSON writes the run's results for machines.
func writeResultsJSON(path string, res *pipeline.Results) error {
	return writeFileAtomic(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	})
}

// recordPushed merges the targets res pushed to a registry into the
// pushed record (pushedResultsPath), which `slipway resolve` reads: a
// target pushed now replaces its entry; the entries of other targets, and
// of targets this run did not manage to push (their tags still name what
// was pushed before), are kept. Failing to record is a warning.
func recordPushed(lc *loadedConfig, res *pipeline.Results, log *slog.Logger) {
	path := pushedResultsPath(lc)
	merged, err := mergePushed(path, res)
	if err == nil {
		err = publish.MkdirOutput(filepath.Dir(path))
	}
	if err == nil {
		err = writeResultsJSON(path, merged)
	}
	if err != nil {
		log.Warn("recording results", "file", path, "err", err)
	}
}

// mergePushed returns the pushed results at path (none when missing)
// updated with what res pushed to a registry, sorted by target.
func mergePushed(path string, res *pipeline.Results) (*pipeline.Results, error) {
	byTarget := map[string]pipeline.TargetResult{}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		var prev pipeline.Results
		// An unreadable file (another version's) is replaced, not merged.
		if json.Unmarshal(old, &prev) == nil {
			for _, t := range prev.Targets {
				if t.Pushed && t.Ref != "" && !isLocalRef(t.Ref) {
					byTarget[t.Target] = t
				}
			}
		}
	}
	for _, t := range res.Targets {
		if t.Pushed && t.Ref != "" && !isLocalRef(t.Ref) {
			byTarget[t.Target] = t
		}
	}
	out := &pipeline.Results{Targets: make([]pipeline.TargetResult, 0, len(byTarget))}
	for _, t := range byTarget {
		out.Targets = append(out.Targets, t)
	}
	sort.Slice(out.Targets, func(i, j int) bool { return out.Targets[i].Target < out.Targets[j].Target })
	return out, nil
}

// recordLast records the results of a build or run, whatever it wrote, in
// lastResultsPath.
func recordLast(lc *loadedConfig, res *pipeline.Results, log *slog.Logger) {
	path := lastResultsPath(lc)
	err := publish.MkdirOutput(filepath.Dir(path))
	if err == nil {
		err = writeResultsJSON(path, res)
	}
	if err != nil {
		log.Warn("recording results", "file", path, "err", err)
	}
}

// printSummary writes a human summary table of the run.
func printSummary(w io.Writer, res *pipeline.Results) {
	// Errors are not repeated here: main prints each failure once.
	if res == nil || len(res.Targets) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTARGET\tGATE\tCRITICAL\tHIGH\tMEDIUM\tLOW\tSIGNED\tWRITTEN\tDIGEST")
	for _, t := range res.Targets {
		written := "no"
		if t.Pushed {
			written = "yes"
		}
		signed := "no"
		if len(t.Signatures) > 0 {
			signed = "yes"
		}
		dig := t.Digest
		if len(dig) > 19 {
			dig = dig[:19] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Target, t.Gate,
			t.Findings["CRITICAL"], t.Findings["HIGH"], t.Findings["MEDIUM"], t.Findings["LOW"], signed, written, dig)
	}
	tw.Flush()
	for _, t := range res.Targets {
		if t.Ref != "" {
			fmt.Fprintf(w, "%s: %s\n", t.Target, t.Ref)
		}
	}
}

// githubActions writes step outputs and a job summary when running in
// GitHub Actions (GITHUB_ACTIONS=true).
func githubActions(res *pipeline.Results) error {
	if os.Getenv("GITHUB_ACTIONS") != "true" || res == nil {
		return nil
	}
	if p := os.Getenv("GITHUB_OUTPUT"); p != "" {
		var b strings.Builder
		for _, t := range res.Targets {
			if !t.Pushed {
				continue
			}
			fmt.Fprintf(&b, "%s-digest=%s\n", t.Target, t.Digest)
			fmt.Fprintf(&b, "%s-ref=%s\n", t.Target, t.Ref)
		}
		if err := appendFile(p, b.String()); err != nil {
			return fmt.Errorf("writing GITHUB_OUTPUT: %w", err)
		}
	}
	if p := os.Getenv("GITHUB_STEP_SUMMARY"); p != "" {
		var b strings.Builder
		b.WriteString("## slipway\n\n| target | gate | critical | high | medium | low | signed | pushed | reference |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range res.Targets {
			ref := t.Ref
			if ref == "" {
				ref = t.Digest
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %v | %v | `%s` |\n", t.Target, t.Gate,
				t.Findings["CRITICAL"], t.Findings["HIGH"], t.Findings["MEDIUM"], t.Findings["LOW"], len(t.Signatures) > 0, t.Pushed, ref)
		}
		var errs []string
		for _, t := range res.Targets {
			if t.Error != "" {
				errs = append(errs, fmt.Sprintf("- **%s**: %s", t.Target, t.Error))
			}
		}
		sort.Strings(errs)
		if len(errs) > 0 {
			b.WriteString("\n" + strings.Join(errs, "\n") + "\n")
		}
		if err := appendFile(p, b.String()); err != nil {
			return fmt.Errorf("writing GITHUB_STEP_SUMMARY: %w", err)
		}
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
