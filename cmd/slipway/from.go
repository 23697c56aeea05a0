package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
)

// shardIdentity is what a shard records and a merge compares besides the
// commit: this slipway's version and the config file's digest.
func shardIdentity(lc *loadedConfig) pipeline.ShardIdentity {
	return pipeline.ShardIdentity{Slipway: version, Config: pipeline.ConfigDigest(lc.data)}
}

// openShards opens the --from shards: oci:DIR as it is, oci-archive:FILE
// unpacked into a private directory with every blob hashed against its
// name (publish.OpenArchive). cleanup removes what was unpacked.
func openShards(specs []string) (shards []pipeline.Shard, cleanup func(), err error) {
	var cleanups []func()
	cleanup = func() {
		for _, c := range cleanups {
			c()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	for _, spec := range specs {
		switch {
		case strings.HasPrefix(spec, build.LayoutPrefix) && len(spec) > len(build.LayoutPrefix):
			dir, err := filepath.Abs(strings.TrimPrefix(spec, build.LayoutPrefix))
			if err != nil {
				return nil, cleanup, err
			}
			shards = append(shards, pipeline.Shard{Name: spec, Dir: dir})
		case strings.HasPrefix(spec, publish.ArchivePrefix) && len(spec) > len(publish.ArchivePrefix):
			dir, c, err := publish.OpenArchive(strings.TrimPrefix(spec, publish.ArchivePrefix))
			if err != nil {
				return nil, cleanup, fmt.Errorf("shard %s: %w", spec, err)
			}
			cleanups = append(cleanups, c)
			shards = append(shards, pipeline.Shard{Name: spec, Dir: dir})
		default:
			return nil, cleanup, &usageError{fmt.Errorf("--from %q: want oci:DIR or oci-archive:FILE", spec)}
		}
	}
	return shards, cleanup, nil
}

// mergeStages makes st build from the shards (see pipeline.OpenShards):
// the shards are the builder and the base resolver; base_policy was
// checked where the shards were built. The rest of st (scanner, gate,
// signer, destination) is the run's.
func mergeStages(st *pipeline.Stages, lc *loadedConfig, jobs []pipeline.Job, specs []string, log *slog.Logger) (cleanup func(), err error) {
	shards, cleanup, err := openShards(specs)
	if err != nil {
		return cleanup, err
	}
	s, err := pipeline.OpenShards(shards, jobs, shardIdentity(lc))
	if err != nil {
		return cleanup, lc.withFile(err)
	}
	log.Info("merging shards", "shards", len(shards), "targets", len(jobs))
	st.Builder, st.ResolveBase, st.VerifyBase = s, s.ResolveBase, nil
	return cleanup, nil
}
