package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globalFlags are the flags every command has.
type globalFlags struct {
	config    string
	verbose   bool
	quiet     bool
	logFormat string
}

// newRoot is the slipway command; g receives the global flags' values.
func newRoot(g *globalFlags) *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Build Go source into signed, scanned, multi-platform container images",
		Long: `slipway builds static Go binaries for every platform, assembles them onto a
base image into a multi-platform index (no Docker), scans every platform with
Trivy, signs the locally computed digests with cosign, and pushes only when
every gate passed.

Configuration comes from slipway.yaml (--config, SLIPWAY_CONFIG), overridden
by SLIPWAY_<KEY> environment variables (SLIPWAY_SCAN_DB_DIR for scan.db.dir),
overridden by flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.config, "config", "c", "", "config file (default: $SLIPWAY_CONFIG or ./slipway.yaml)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log debug details")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "log only warnings and errors")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")

	root.AddCommand(
		newBuildCmd(g),
		newRunCmd(g),
		newPushCmd(g),
		newScanCmd(g),
		newDBCmd(g),
		newKeygenCmd(g),
		newSignCmd(g),
		newVerifyCmd(g),
		newPolicyCmd(g),
		newResolveCmd(g),
		newCacheCmd(g),
		newOutdatedCmd(g),
		newVersionCmd(),
	)
	return root
}

// logger is the logger for libraries: human text on stderr, or JSON lines.
func (g *globalFlags) logger() *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.verbose:
		level = slog.LevelDebug
	case g.quiet:
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	var w io.Writer = os.Stderr
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(newHumanHandler(w, level))
}

// humanOut is where tables for people go: stderr, or nowhere with --quiet.
func (g *globalFlags) humanOut() io.Writer {
	if g.quiet {
		return nil
	}
	return os.Stderr
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
