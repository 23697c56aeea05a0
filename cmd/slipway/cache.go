package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-build/slipway/internal/cachedir"
	"github.com/slipway-build/slipway/scan/trivy"
	"github.com/spf13/cobra"
)

// cacheKinds are the caches slipway keeps under cache_dir (see cacheDir),
// and only these are pruned: other tools' files there (the test peers in
// ~/.cache/slipway/peers, say) are not slipway's to remove.
var cacheKinds = []string{"build", "reports", "sbom", "signatures", "content", "scan"}

// cacheRoots are the directories of slipway's caches: each kind under
// cache_dir (or the user cache dir's slipway/), and the per-layer scan
// cache.
func (lc *loadedConfig) cacheRoots() ([]string, error) {
	root, err := lc.cacheRoot()
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, k := range cacheKinds {
		roots = append(roots, filepath.Join(root, k))
	}
	scanDir := lc.path(lc.Scan.CacheDir)
	if lc.Scan.CacheDir == "" {
		scanDir, _ = trivy.DefaultCacheDir() // none without a user cache dir: then no scan cache either
	}
	if scanDir != "" && !slices.Contains(roots, scanDir) {
		roots = append(roots, scanDir)
	}
	return roots, nil
}

// cacheBound is the configured bound of the caches (cache_max_bytes).
func (lc *loadedConfig) cacheBound() int64 {
	if lc.CacheMaxBytes > 0 {
		return lc.CacheMaxBytes
	}
	return cachedir.DefaultMaxSize
}

// boundCaches prunes the caches to their bound after a build or run; a
// failure is logged, never the run's.
func boundCaches(lc *loadedConfig, log *slog.Logger) {
	roots, err := lc.cacheRoots()
	if err == nil {
		var res cachedir.PruneResult
		if res, err = cachedir.Prune(roots, 0, lc.cacheBound(), time.Now()); err == nil && res.Files > 0 {
			log.Info("cache pruned", "files", res.Files, "freed_bytes", res.Bytes, "kept_bytes", res.KeptBytes)
		}
	}
	if err != nil {
		log.Warn("bounding the caches", "err", err)
	}
}

func newCacheCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cache", Short: "Manage slipway's caches"}
	var maxAge time.Duration
	var maxSize string
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove cache entries, least recently used first",
		Long: `prune removes entries of slipway's caches (cache_dir: binaries, reports,
SBOMs, signature record, base content; and the per-layer scan cache) that
were not used for --max-age, then more, least recently used first, until
they hold at most --max-size (default: cache_max_bytes, 5 GiB). Every build
and run applies cache_max_bytes by itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc, err := loadConfig(g, cmd.Flags(), nil)
			if err != nil {
				return err
			}
			size := lc.cacheBound()
			if maxSize != "" {
				if size, err = parseSize(maxSize); err != nil {
					return &usageError{fmt.Errorf("--max-size: %w", err)}
				}
			}
			if maxAge < 0 {
				return &usageError{fmt.Errorf("--max-age must not be negative")}
			}
			roots, err := lc.cacheRoots()
			if err != nil {
				return err
			}
			res, err := cachedir.Prune(roots, maxAge, size, time.Now())
			if err != nil {
				return fmt.Errorf("pruning %s: %w", strings.Join(roots, ", "), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d files (%d bytes); %d bytes kept in %s\n", res.Files, res.Bytes, res.KeptBytes, strings.Join(roots, ", "))
			return nil
		},
	}
	prune.Flags().DurationVar(&maxAge, "max-age", 0, "remove entries not used for this long (e.g. 720h)")
	prune.Flags().StringVar(&maxSize, "max-size", "", "keep at most this much, e.g. 2GiB, 500MB or bytes (default: cache_max_bytes, 5 GiB)")
	cmd.AddCommand(prune)
	return cmd
}

// parseSize reads bytes with an optional unit (KB, MB, GB, KiB, MiB, GiB).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 2GiB, 500MB, 1048576)", s)
	}
	return n * mult, nil
}
