package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/publish"
)

// RegistryDestination writes each job to its repository.
type RegistryDestination struct {
	Registry *publish.Registry
}

var _ Destination = (*RegistryDestination)(nil)

// Check implements Checker: the registry is reachable and accepts pushes
// to the job's repository with the configured credentials.
func (d *RegistryDestination) Check(ctx context.Context, j Job) error {
	if err := d.Registry.CheckPush(ctx, j.Repository); err != nil {
		return err
	}
	return nil
}

// WriteImage implements Destination.
func (d *RegistryDestination) WriteImage(ctx context.Context, j Job, b *build.Result) (string, error) {
	if j.Repository.RepositoryStr() == "" {
		return "", fmt.Errorf("no repository configured for %s", j.Target.Name)
	}
	ref, err := d.Registry.WriteIndex(ctx, j.Repository, b.Index)
	if err != nil {
		return "", err
	}
	return ref.String(), nil
}

// GateManifests implements manifestGater: the signatures are written
// beside the image, their manifests after it.
func (d *RegistryDestination) GateManifests(ctx context.Context, wait func(context.Context) error) context.Context {
	return publish.WithManifestGate(ctx, wait)
}

// WriteSignatures implements Destination.
func (d *RegistryDestination) WriteSignatures(ctx context.Context, j Job, _ *build.Result, s Signatures) error {
	if err := writeSignaturesTo(ctx, d.Registry, j.Repository, s); err != nil {
		return fmt.Errorf("writing signatures: %w", err)
	}
	return nil
}

// writeSignaturesTo writes s to repo in reg's session with it: its remote
// options, and its transport for what the signatures write.
func writeSignaturesTo(ctx context.Context, reg *publish.Registry, repo name.Repository, s Signatures) error {
	opts, err := reg.RepositoryOptions(ctx, repo)
	if err != nil {
		return err
	}
	tr, err := reg.RepositoryTransport(ctx, repo)
	if err != nil {
		return err
	}
	return s.WriteRemote(ctx, repo, tr, opts...)
}

// Tag implements Destination.
func (d *RegistryDestination) Tag(ctx context.Context, j Job, b *build.Result) error {
	return d.Registry.Tag(ctx, j.Repository.Digest(b.Digest.String()), j.Tags)
}

// LayoutDestination writes every job into one OCI image layout. Its
// writes are serialised: each rewrites the layout's index.json (targets
// are written side by side, and a local disk gains nothing from it).
type LayoutDestination struct {
	Layout *publish.Layout
	// Dir is the layout's directory, as shown to users.
	Dir string

	mu sync.Mutex
}

var _ Destination = (*LayoutDestination)(nil)

// WriteImage implements Destination. Tags are recorded with the image (a
// layout has no separate tag step).
func (d *LayoutDestination) WriteImage(_ context.Context, j Job, b *build.Result) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.Layout.WriteIndex(j.Target.Name, b.Index, nil); err != nil {
		return "", err
	}
	return build.LayoutPrefix + d.Dir + "@" + b.Digest.String(), nil
}

// WriteSignatures implements Destination.
func (d *LayoutDestination) WriteSignatures(_ context.Context, _ Job, _ *build.Result, s Signatures) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := s.WriteLayout(d.Dir); err != nil {
		return fmt.Errorf("writing signatures: %w", err)
	}
	return nil
}

// Tag implements Destination: it records the tags in index.json.
func (d *LayoutDestination) Tag(_ context.Context, j Job, b *build.Result) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.Layout.WriteIndex(j.Target.Name, b.Index, j.Tags)
	return err
}
