package pipeline

import (
	"context"
	"fmt"
	"os"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/publish"
)

// ArchiveDestination writes every job into one OCI layout archive
// (--oci-archive FILE): the jobs go to a private temporary layout, exactly
// as LayoutDestination writes them (signatures included), and Commit
// writes that layout as one tar at File, atomically. Nothing is at File
// until Commit succeeds.
type ArchiveDestination struct {
	// File is the archive's path, as shown to users.
	File string

	layout *LayoutDestination
	dir    string
}

var _ Destination = (*ArchiveDestination)(nil)

// NewArchiveDestination makes the destination of the archive file, with
// its temporary layout; Close removes the layout.
func NewArchiveDestination(file string) (*ArchiveDestination, error) {
	dir, err := os.MkdirTemp("", "slipway-oci-archive-")
	if err != nil {
		return nil, fmt.Errorf("oci-archive: %w", err)
	}
	l, err := publish.NewLayout(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &ArchiveDestination{File: file, layout: &LayoutDestination{Layout: l, Dir: dir}, dir: dir}, nil
}

// WriteImage implements Destination; the reference names the archive:
// oci-archive:FILE@sha256:….
func (d *ArchiveDestination) WriteImage(ctx context.Context, j Job, b *build.Result) (string, error) {
	if _, err := d.layout.WriteImage(ctx, j, b); err != nil {
		return "", err
	}
	return publish.ArchivePrefix + d.File + "@" + b.Digest.String(), nil
}

// WriteSignatures implements Destination.
func (d *ArchiveDestination) WriteSignatures(ctx context.Context, j Job, b *build.Result, s Signatures) error {
	return d.layout.WriteSignatures(ctx, j, b, s)
}

// Tag implements Destination.
func (d *ArchiveDestination) Tag(ctx context.Context, j Job, b *build.Result) error {
	return d.layout.Tag(ctx, j, b)
}

// Commit writes the layout to File (see publish.WriteArchive).
func (d *ArchiveDestination) Commit() error {
	return publish.WriteArchive(d.dir, d.File)
}

// Close removes the temporary layout.
func (d *ArchiveDestination) Close() error {
	return os.RemoveAll(d.dir)
}
