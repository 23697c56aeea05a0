package publish

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry writes images to a container registry.
type Registry struct {
	opts []remote.Option
}

// NewRegistry returns a Registry publisher. opts are passed to every
// go-containerregistry remote call (auth, transport, jobs, progress).
func NewRegistry(opts ...remote.Option) *Registry {
	return &Registry{opts: opts}
}

func (r *Registry) remoteOpts(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, r.opts...)
}

// WriteIndex writes idx to repo by digest, with no tag: blobs first (those
// the registry already has are skipped, base layers are mounted across
// repositories where possible), then each platform manifest, then the index.
func (r *Registry) WriteIndex(ctx context.Context, repo name.Repository, idx v1.ImageIndex) (name.Digest, error) {
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("computing digest: %w", err)
	}
	ref := repo.Digest(d.String())
	if err := remote.WriteIndex(ref, idx, r.remoteOpts(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return ref, nil
}

// Tag points each of tags at the manifest d, which must already be in the
// registry. Call it last, so a tag never names an incomplete image.
func (r *Registry) Tag(ctx context.Context, d name.Digest, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	desc, err := remote.Get(d, r.remoteOpts(ctx)...)
	if err != nil {
		return fmt.Errorf("reading back %s before tagging: %w", d, err)
	}
	if desc.Digest.String() != d.DigestStr() {
		return fmt.Errorf("registry returned %s for %s", desc.Digest, d)
	}
	for _, t := range tags {
		tag := d.Context().Tag(t)
		if err := remote.Tag(tag, desc, r.remoteOpts(ctx)...); err != nil {
			return fmt.Errorf("tagging %s: %w", tag, err)
		}
	}
	return nil
}
