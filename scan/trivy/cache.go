package trivy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// layerCache is Trivy's scan cache interface over a plain directory: one
// JSON file per key, written to a temporary file and renamed into place.
//
// Trivy's own FS cache is one bbolt file that a process locks for as long
// as it has it open (trivy#650), so a second slipway scanning with the same
// cache dir would block. Here readers never lock: rename is atomic, so a
// reader sees either no file or a complete one, and two writers of the same
// key write the same analysis, so whichever rename lands last is as good as
// the other. Keys embed the view layer ID (see layerView.viewID: layer
// digests and diff_ids slipway verified) and the versions of every enabled
// analyzer and handler (Trivy's cache.CalcKey), so a file is never updated
// in place. Layer indexes (see layerIndex) are kept beside them.
type layerCache struct {
	dir string
}

var _ cache.Cache = (*layerCache)(nil)

// cacheLayoutVersion names the directory layout under the cache dir. v2:
// blob keys are derived from the scan view's layer IDs (verified digests),
// never from a diff_id an image config claims, so v1 entries, which were,
// are never read.
const cacheLayoutVersion = "trivy-json-v2"

func newLayerCache(dir string) (*layerCache, error) {
	c := &layerCache{dir: filepath.Join(dir, cacheLayoutVersion)}
	for _, d := range []string{dir, c.dir, filepath.Join(c.dir, "blob"), filepath.Join(c.dir, "artifact"), filepath.Join(c.dir, "index")} {
		if err := cachedir.Ensure(d); err != nil {
			return nil, fmt.Errorf("scan cache: %w", err)
		}
	}
	return c, nil
}

func (c *layerCache) path(kind, key string) (string, error) {
	// Keys are "sha256:<hex>"; refuse anything that could leave the dir.
	name := strings.ReplaceAll(key, ":", "-")
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("invalid cache key %q", key)
	}
	return filepath.Join(c.dir, kind, name+".json"), nil
}

func (c *layerCache) put(kind, key string, v any) error {
	p, err := c.path(kind, key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding cache entry: %w", err)
	}
	if err := atomicfile.WriteBytes(p, 0o600, b); err != nil {
		return fmt.Errorf("cache entry: %w", err)
	}
	return nil
}

func (c *layerCache) get(kind, key string, v any) error {
	p, err := c.path(kind, key)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading cache entry: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding cache entry %s: %w", filepath.Base(p), err)
	}
	cachedir.Touch(p) // used: kept by cache pruning
	return nil
}

// PutArtifact stores image-level analysis (config, history).
func (c *layerCache) PutArtifact(_ context.Context, id string, info ftypes.ArtifactInfo) error {
	return c.put("artifact", id, info)
}

// PutBlob stores the analysis of one layer.
func (c *layerCache) PutBlob(_ context.Context, id string, info ftypes.BlobInfo) error {
	return c.put("blob", id, info)
}

// GetArtifact returns image-level analysis stored by PutArtifact.
func (c *layerCache) GetArtifact(_ context.Context, id string) (ftypes.ArtifactInfo, error) {
	var info ftypes.ArtifactInfo
	err := c.get("artifact", id, &info)
	return info, err
}

// GetBlob returns the analysis of a layer stored by PutBlob.
func (c *layerCache) GetBlob(_ context.Context, id string) (ftypes.BlobInfo, error) {
	var info ftypes.BlobInfo
	err := c.get("blob", id, &info)
	return info, err
}

// MissingBlobs reports which of the keys have no usable entry: absent,
// undecodable or of another schema version.
func (c *layerCache) MissingBlobs(_ context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	var missing []string
	for _, id := range blobIDs {
		var v struct{ SchemaVersion int }
		if err := c.get("blob", id, &v); err != nil || v.SchemaVersion != ftypes.BlobJSONSchemaVersion {
			missing = append(missing, id)
		}
	}
	var a struct{ SchemaVersion int }
	missingArtifact := c.get("artifact", artifactID, &a) != nil || a.SchemaVersion != ftypes.ArtifactJSONSchemaVersion
	return missingArtifact, missing, nil
}

// DeleteBlobs removes layer entries.
func (c *layerCache) DeleteBlobs(_ context.Context, ids []string) error {
	var errs []error
	for _, id := range ids {
		p, err := c.path("blob", id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close releases nothing: the cache holds no open files or locks.
func (c *layerCache) Close() error { return nil }

// Clear removes every entry.
func (c *layerCache) Clear(context.Context) error {
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("clearing scan cache: %w", err)
	}
	_, err := newLayerCache(filepath.Dir(c.dir))
	return err
}

// layerIndex returns the index of a layer, from the cache or by reading
// (and verifying) the layer. Entries are keyed by the layer's digest and
// diff_id together and written only once both were verified.
func (c *layerCache) layerIndex(s sourceLayer) (*layerIndex, error) {
	key := indexKey(s)
	var idx layerIndex
	if err := c.get("index", key, &idx); err == nil && idx.Version == layerIndexVersion {
		return &idx, nil
	}
	read, err := readIndex(s)
	if err != nil {
		return nil, err
	}
	if err := c.put("index", key, read); err != nil {
		return nil, err
	}
	return read, nil
}
