package trivy

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Entry types of a layerIndex.
const (
	entryFile     = 'f'
	entryDir      = 'd'
	entrySymlink  = 'l'
	entryHardlink = 'h'
	entryWhiteout = 'w'
	entryOpaque   = 'o'
	entryOther    = '?'
)

// layerIndexVersion changes when layerIndex or its derivation changes.
const layerIndexVersion = 1

// layerIndex lists the entries of one layer's tar, in order, without
// content: enough to model the filesystem the layers unpack to.
type layerIndex struct {
	Version int          `json:"version"`
	Entries []indexEntry `json:"entries"`
}

type indexEntry struct {
	// Path is the cleaned entry name without a leading slash; for
	// whiteouts the path they hide, for opaque markers their directory.
	Path string `json:"p"`
	Type byte   `json:"t"`
	// Link is the symlink or hard link target.
	Link string `json:"l,omitempty"`
	Mode int64  `json:"m,omitempty"`
	Size int64  `json:"s,omitempty"`
}

func cleanEntryPath(name string) string {
	p := strings.TrimLeft(path.Clean("/"+name), "/")
	return p
}

// indexEntryOf classifies a tar header as Trivy's walker and containerd do.
func indexEntryOf(h *tar.Header) indexEntry {
	p := cleanEntryPath(h.Name)
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == ".wh..wh..opq":
		return indexEntry{Path: dir, Type: entryOpaque}
	case strings.HasPrefix(base, ".wh."):
		return indexEntry{Path: path.Join(dir, strings.TrimPrefix(base, ".wh.")), Type: entryWhiteout}
	}
	e := indexEntry{Path: p, Mode: h.Mode}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		e.Type, e.Size = entryFile, h.Size
	case tar.TypeDir:
		e.Type = entryDir
	case tar.TypeSymlink:
		e.Type, e.Link = entrySymlink, h.Linkname
	case tar.TypeLink:
		e.Type, e.Link = entryHardlink, cleanEntryPath(h.Linkname)
	default:
		e.Type = entryOther
	}
	return e
}

// DiffIDMismatchError is returned when a layer's uncompressed content does
// not have the diff_id its image config claims for it.
type DiffIDMismatchError struct {
	Layer   v1.Hash // the layer's (compressed) digest
	Claimed v1.Hash // the diff_id in the image config
	Actual  string  // the digest of the uncompressed content
}

func (e *DiffIDMismatchError) Error() string {
	return fmt.Sprintf("layer %s: uncompressed content has digest %s but the image config claims diff_id %s: "+
		"the image is inconsistent and no runtime would unpack it; rebuild or re-push the base image", e.Layer, e.Actual, e.Claimed)
}

// diffIDVerifier hashes an uncompressed layer stream and, at its end,
// fails instead of returning io.EOF if the digest is not the claimed
// diff_id.
type diffIDVerifier struct {
	r            io.Reader
	h            hash.Hash
	layer, claim v1.Hash
	err          error
}

func newDiffIDVerifier(r io.Reader, layer, claim v1.Hash) *diffIDVerifier {
	return &diffIDVerifier{r: r, h: sha256.New(), layer: layer, claim: claim}
}

func (v *diffIDVerifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		got := "sha256:" + hex.EncodeToString(v.h.Sum(nil))
		if v.claim.Algorithm != "sha256" || got != v.claim.String() {
			v.err = &DiffIDMismatchError{Layer: v.layer, Claimed: v.claim, Actual: got}
			return n, v.err
		}
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// sourceLayer is one layer of the scanned image as the manifest and the
// config name it.
type sourceLayer struct {
	layer  v1.Layer // capped by the scan's budget
	digest v1.Hash  // compressed digest, from the manifest
	diffID v1.Hash  // claimed by the config
}

// walk reads the whole layer once, verifying it against its digest and
// diff_id to the end of the stream, and calls f with each tar entry in
// order, numbered from 0; r reads the entry's content.
func (s sourceLayer) walk(f func(i int, h *tar.Header, r io.Reader) error) error {
	rc, err := s.layer.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	v := newDiffIDVerifier(rc, s.digest, s.diffID)
	tr := tar.NewReader(v)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("layer %s: reading tar: %w", s.digest, err)
		}
		if err := f(i, h, tr); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, v); err != nil {
		var mm *DiffIDMismatchError
		if errors.As(err, &mm) {
			return err
		}
		return fmt.Errorf("layer %s: %w", s.digest, err)
	}
	return nil
}

// readIndex reads the whole layer, verifying it, and lists its entries.
func readIndex(s sourceLayer) (*layerIndex, error) {
	idx := &layerIndex{Version: layerIndexVersion, Entries: []indexEntry{}}
	err := s.walk(func(_ int, h *tar.Header, _ io.Reader) error {
		idx.Entries = append(idx.Entries, indexEntryOf(h))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return idx, nil
}

// indexKey is the cache key of a layer's index: its compressed digest and
// its diff_id, both verified before the entry is written.
func indexKey(s sourceLayer) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("slipway-layer-index v%d\n%s %s\n", layerIndexVersion, s.digest, s.diffID)))
	return "sha256:" + hex.EncodeToString(h[:])
}
