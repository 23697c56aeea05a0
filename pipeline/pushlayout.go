package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/publish"
)

// LayoutSignatures finds the signatures stored in a layout for a digest
// (nil when there are none).
type LayoutSignatures func(target string, digest v1.Hash) (Signatures, error)

// PushLayout publishes the targets of an OCI layout written by slipway to a
// registry unchanged (same digests): for each target, the index by digest,
// then its signatures, then its tags. repoFor maps a target to its
// repository; selected limits the targets (all when empty).
func PushLayout(ctx context.Context, l *publish.Layout, reg *publish.Registry, repoFor func(target string) (name.Repository, error), sigs LayoutSignatures, selected []string) (*Results, error) {
	entries, err := l.Entries()
	if err != nil {
		return nil, err
	}
	// Names and tags in index.json are input like a config: check them all
	// before anything is written.
	index := filepath.Join(string(l.Path()), "index.json")
	for _, e := range entries {
		if err := CheckTargetName(e.Target); err != nil {
			return nil, &ConfigError{File: index, Key: "target", Msg: err.Error() + "; rename the target in slipway.yaml and rebuild the layout with slipway build"}
		}
		for _, t := range e.Tags {
			if err := CheckTag(t); err != nil {
				return nil, &ConfigError{File: index, Key: "target " + e.Target + " tag", Msg: err.Error() + " in slipway.yaml, and rebuild the layout with slipway build"}
			}
		}
	}
	want := map[string]bool{}
	for _, s := range selected {
		want[s] = true
	}
	res := &Results{}
	for _, e := range entries {
		if len(want) > 0 && !want[e.Target] {
			continue
		}
		delete(want, e.Target)
		repo, err := repoFor(e.Target)
		if err != nil {
			return res, err
		}
		tr := TargetResult{Target: e.Target, Digest: e.Digest.String(), Tags: e.Tags, Gate: "skipped", Timings: map[string]Duration{}}
		ref, err := reg.WriteIndex(ctx, repo, e.Index)
		if err != nil {
			return res, fmt.Errorf("pushing %s: %w", e.Target, err)
		}
		tr.Ref = ref.String()
		if sigs != nil {
			s, err := sigs(e.Target, e.Digest)
			if err != nil {
				return res, fmt.Errorf("reading signatures of %s: %w", e.Target, err)
			}
			if s != nil {
				if err := writeSignaturesTo(ctx, reg, repo, s); err != nil {
					return res, fmt.Errorf("pushing signatures of %s: %w", e.Target, err)
				}
				tr.Signatures = s.Refs()
			}
		}
		if err := reg.Tag(ctx, ref, e.Tags); err != nil {
			return res, fmt.Errorf("pushing %s: %w", e.Target, err)
		}
		tr.Pushed = true
		res.Targets = append(res.Targets, tr)
	}
	for s := range want {
		return res, &ConfigError{Key: "targets", Msg: fmt.Sprintf("layout has no target %q", s)}
	}
	return res, nil
}
