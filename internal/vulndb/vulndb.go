// Package vulndb builds Trivy vulnerability databases from YAML fixtures and
// publishes them as OCI artifacts, for tests and the offline demo.
package vulndb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of Trivy's DB artifact.
const (
	LayerMediaType  types.MediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
	ConfigMediaType types.MediaType = "application/vnd.aquasec.trivy.config.v1+json"
)

// NextUpdateInterval is how far after UpdatedAt Build sets NextUpdate,
// mirroring the published DB.
const NextUpdateInterval = 24 * time.Hour

// Build loads every *.yaml fixture in fixturesDir (bolt-fixtures format, as
// in Trivy's integration/testdata/fixtures/db) into <outDir>/db/trivy.db and
// writes <outDir>/db/metadata.json with the current schema version,
// UpdatedAt = updatedAt and NextUpdate = updatedAt + NextUpdateInterval.
// outDir is laid out like Trivy's cache dir, so it can be passed as such.
// An existing DB in outDir is replaced.
func Build(fixturesDir, outDir string, updatedAt time.Time) error {
	files, err := filepath.Glob(filepath.Join(fixturesDir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("listing fixtures: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("no *.yaml fixtures in %s", fixturesDir)
	}
	sort.Strings(files)
	dbDir := filepath.Join(outDir, "db")
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		return fmt.Errorf("creating db dir: %w", err)
	}
	tmp, err := os.CreateTemp(dbDir, ".trivy.db-*")
	if err != nil {
		return fmt.Errorf("creating db file: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	// bbolt cannot open an empty file that is not a DB: start from nothing.
	if err := os.Remove(tmp.Name()); err != nil {
		return fmt.Errorf("creating db file: %w", err)
	}
	loader, err := fixtures.New(tmp.Name(), files)
	if err != nil {
		return fmt.Errorf("opening db: %w", err)
	}
	if err := loader.Load(); err != nil {
		loader.Close()
		return fmt.Errorf("loading fixtures: %w", err)
	}
	if err := loader.Close(); err != nil {
		return fmt.Errorf("closing db: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("db permissions: %w", err)
	}
	if err := os.Rename(tmp.Name(), db.Path(dbDir)); err != nil {
		return fmt.Errorf("installing db: %w", err)
	}
	meta := metadata.Metadata{
		Version:    db.SchemaVersion,
		UpdatedAt:  updatedAt.UTC(),
		NextUpdate: updatedAt.UTC().Add(NextUpdateInterval),
	}
	if err := metadata.NewClient(dbDir).Update(meta); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}
	return nil
}

// Artifact packs the DB in <cacheDir>/db (trivy.db and metadata.json) into
// an OCI artifact shaped like Trivy's published DB: one gzipped tar layer of
// media type LayerMediaType, a config of ConfigMediaType.
func Artifact(cacheDir string) (v1.Image, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []string{"trivy.db", "metadata.json"} {
		b, err := os.ReadFile(filepath.Join(cacheDir, "db", f))
		if err != nil {
			return nil, fmt.Errorf("reading db: %w", err)
		}
		hdr := &tar.Header{Name: f, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("packing db: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("packing db: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing db: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("packing db: %w", err)
	}
	layer := static.NewLayer(buf.Bytes(), LayerMediaType)
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       layer,
		Annotations: map[string]string{"org.opencontainers.image.title": "db.tar.gz"},
	})
	if err != nil {
		return nil, fmt.Errorf("assembling artifact: %w", err)
	}
	img = mutate.ConfigMediaType(img, ConfigMediaType)
	return img, nil
}

// Push publishes the DB in <cacheDir>/db to ref as an OCI artifact (see
// Artifact) and returns its manifest digest.
func Push(ctx context.Context, cacheDir string, ref name.Reference, opts ...remote.Option) (v1.Hash, error) {
	img, err := Artifact(cacheDir)
	if err != nil {
		return v1.Hash{}, err
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	if err := remote.Write(ref, img, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing db to %s: %w", ref, err)
	}
	return img.Digest()
}
